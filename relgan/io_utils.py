"""File helpers: atomic writes and validated reading of user-supplied text files."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relgan.errors import DataError, OutputError


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary name and rename it, so a crash never leaves a partial file; a write that
    fails (a full disk, a read-only place) is one OutputError and leaves no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None


def _write_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{path}: no space left on the device; free some (nothing partial was left)")
    return OutputError(f"{path}: cannot write it ({exc.strerror or exc}); nothing partial was left")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def publish_directory(directory: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a staging folder, then rename it to ``directory`` (a concurrent writer's complete copy
    is kept): readers see a whole directory or none."""
    staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    shutil.rmtree(directory, ignore_errors=True)
    try:
        staging.rename(directory)
    except OSError:  # another process published it first
        shutil.rmtree(staging, ignore_errors=True)


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one JSON object as a line; flushed and synced so a crash loses at most this line (a torn last line,
    which a resume drops); a failed append is one OutputError."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(obj, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise _write_error(path, exc) from None


def read_text_lines(path: str | Path, what: str) -> list[str]:
    """Lines of a UTF-8 text file (without line breaks), with one-line errors for unusable files.

    ``what`` names the file's role in messages (e.g. "data.train_file").
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what}: file not found: {path}")
    if not path.is_file():
        raise DataError(f"{what}: not a regular file: {path}")
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not payload.strip():
        raise DataError(f"{what}: file is empty: {path}")
    if payload.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{what}: {path} is UTF-16 text, not UTF-8; re-encode it, e.g. iconv -f UTF-16 -t UTF-8")
    if b"\x00" in payload:
        raise DataError(
            f"{what}: {path} looks binary (it contains NUL bytes); expected UTF-8 text, one sentence per line"
        )
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{what}: {path} is not UTF-8 text (invalid byte at line {line}); re-encode it, e.g. iconv -t UTF-8"
        ) from None
    return text.splitlines()


def emit_json(result: dict[str, Any], out: str | Path | None) -> None:
    """Print a benchmark's or experiment's ``result`` as indented JSON; also write it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
