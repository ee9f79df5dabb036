"""Fetch or import a standard benchmark split into data/<name>/{train,test}.txt and verify it.

Files are identified by their git blob hash (``git hash-object``), which is what the public RelGAN and
Texygen repositories record, so a copy from either repository (or a download of it) is accepted byte for
byte and nothing else is.
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from relgan.errors import DataError
from relgan.io_utils import atomic_write_bytes

RELGAN_RAW = "https://raw.githubusercontent.com/weilinie/RelGAN/master/"


@dataclass(frozen=True)
class BenchmarkFile:
    """One split: where it sits in a RelGAN/Texygen clone, and its git blob hash (or a prefix of it)."""

    split: str  # "train" or "test"
    clone_path: str  # path inside weilinie/RelGAN or geek-ai/Texygen
    blob: str


def git_blob_hash(payload: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(payload) + payload).hexdigest()


def _read_source(source: str, spec: BenchmarkFile) -> tuple[bytes, str]:
    """The file's bytes from a local folder (a clone, or a folder with <split>.txt) or a base URL."""
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/") + "/" + spec.clone_path
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read(), url
        except OSError as exc:
            raise DataError(f"--source: cannot download {url} ({exc}); pass a local clone instead") from None
    folder = Path(source)
    for candidate in (folder / spec.clone_path, folder / f"{spec.split}.txt"):
        if candidate.is_file():
            return candidate.read_bytes(), str(candidate)
    raise DataError(f"--source: neither {folder / spec.clone_path} nor {folder / (spec.split + '.txt')} exists")


def prepare(files: list[BenchmarkFile], source: str, out_dir: Path) -> list[str]:
    """Copy each verified split to ``out_dir/<split>.txt``; returns one line per file written."""
    written = []
    for spec in files:
        payload, origin = _read_source(source, spec)
        digest = git_blob_hash(payload)
        if not digest.startswith(spec.blob):
            raise DataError(
                f"{origin}: checksum mismatch (git blob {digest[:12]}, expected {spec.blob[:12]}); "
                "this is not the standard benchmark file"
            )
        target = out_dir / f"{spec.split}.txt"
        atomic_write_bytes(target, payload)
        lines = payload.count(b"\n") + (not payload.endswith(b"\n"))
        written.append(f"wrote {target}: {lines} lines, {len(payload)} bytes, git blob {digest[:12]} (from {origin})")
    return written


def main(name: str, files: list[BenchmarkFile], argv: list[str] | None = None) -> int:
    """Command line of data/<name>/prepare.py."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=f"Prepare the {name} benchmark: data/{name}/{{train,test}}.txt")
    parser.add_argument(
        "--source",
        default=RELGAN_RAW,
        help="a local clone of weilinie/RelGAN or geek-ai/Texygen, a folder holding train.txt/"
        f"test.txt, or a base URL (default {RELGAN_RAW})",
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent.parent / "data" / name),
        help="output folder (default data/<name>)",
    )
    args = parser.parse_args(argv)
    try:
        for line in prepare(files, args.source, Path(args.out)):
            print(line)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
