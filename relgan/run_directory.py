"""The safety of a run directory: one writer at a time (an advisory lock), and what ``--overwrite`` may delete.

The lock is ``fcntl.flock`` on ``<run dir>/.lock``, taken by the process that writes the run (the main process
of a DDP run; each replica's directory has its own) and held until the run ends. The kernel releases it when the
process ends, however it ends, so a lock file left by a killed run never blocks the next one. The file holds the
writer's process id, which the refusal names.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from relgan.checkpoint import complete_checkpoints
from relgan.errors import CheckpointError

LOCK_FILE = ".lock"
RUN_MARKER = ".relgan-run"  # written by relgan into every run directory it starts, and by nothing else


class RunLock:
    """The advisory lock of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the directory), or fail in one line naming the process that holds it."""
        writable(self.run_dir, "run directory")
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(
                f"{self.run_dir} is being written by another process (pid {holder}); wait for it to end or stop it, "
                "or pick another run.name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def prepare_fresh(run_dir: Path, overwrite: bool) -> None:
    """An empty run directory for a new run (its lock file aside). An existing run is deleted only with
    ``overwrite``, and only if it is recognisably a relgan run directory."""
    # a directory that holds no more than relgan's lock and marker (a start that failed early) counts as new
    entries = sorted(p for p in run_dir.iterdir() if p.name not in (LOCK_FILE, RUN_MARKER)) if run_dir.is_dir() else []
    if not entries:
        _mark(run_dir)
        return
    if not overwrite:
        advice = (
            "continue it with --resume, start over with --overwrite"
            if complete_checkpoints(run_dir)
            else "it has no complete checkpoint to resume from: start over with --overwrite"
        )
        raise CheckpointError(f"run directory {run_dir} already exists; {advice}, or pick another run.name")
    if not (run_dir / RUN_MARKER).is_file():
        found = ", ".join(p.name for p in entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise CheckpointError(
            f"--overwrite: {run_dir} is not a relgan run directory (no {RUN_MARKER} marker, which relgan writes into "
            f"every run it starts; it holds {found}); nothing was deleted: pick another run.name or run.output_dir "
            "(a run of relgan before 0.3 has no marker: delete it yourself)"
        )
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _mark(run_dir)


def _mark(run_dir: Path) -> None:
    """The marker by which --overwrite knows a run directory as relgan's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_MARKER).write_text("a relgan run directory: relgan train --overwrite may delete it\n")


def writable(directory: Path, what: str) -> None:
    """Create ``directory`` (and its parents) if needed; a one-line error where it cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CheckpointError(f"{what} {directory}: a file of that name is in the way") from None
    except OSError as exc:
        raise CheckpointError(f"{what} {directory}: cannot create it ({exc.strerror})") from None
    _probe(directory, f"{what} {directory}")


def output_file(path: Path, option: str) -> None:
    """Check, before any work, that ``path`` can be written: its folder exists and is writable, and it is not a
    folder itself."""
    if path.is_dir():
        raise CheckpointError(f"{option} {path}: is a directory; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise CheckpointError(f"{option} {path}: the folder {folder} does not exist; create it first")
    _probe(folder, f"{option} {path}")


def _probe(folder: Path, what: str) -> None:
    """Write and remove a file in ``folder``: permissions, a read-only file system or a full disk, as they are."""
    probe = folder / f".relgan-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"relgan")
    except OSError as exc:
        raise CheckpointError(f"{what}: cannot write there ({exc.strerror})") from None
    finally:
        probe.unlink(missing_ok=True)
