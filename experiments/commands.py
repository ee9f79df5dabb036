"""Recorded command lines that name no directory of the machine that ran them: the shared benchmark data is
written ``$DATA``, paths inside the repository relative to it, and any other absolute path (a run directory under
/tmp, say) as ``$RUNS/<its name>``."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    """Where the benchmark data lies: $RELGAN_SHARED_DATA, or ../shared/data beside the repository."""
    return Path(os.environ.get("RELGAN_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def portable_path(text: str) -> str:
    """One path (or the value of a key=value word) written portably."""
    key, separator, value = text.rpartition("=") if "=" in text and not text.startswith("/") else ("", "", text)
    if not value.startswith("/"):
        return text
    path = Path(value).resolve()
    for root, name in ((shared_data(), "$DATA"), (REPO, "")):
        if path.is_relative_to(root):
            relative = path.relative_to(root).as_posix()
            value = f"{name}/{relative}" if name else relative or "."
            break
    else:
        value = f"$RUNS/{path.name}"
    return f"{key}{separator}{value}"


def portable_command(words: Sequence[str]) -> str:
    """A command line (its words) with every path written portably, $DATA and $RUNS left for the shell."""
    return " ".join(_quote(word) for word in map(portable_path, words))


def _quote(word: str) -> str:
    bare = word.replace("$DATA", "").replace("$RUNS", "")
    return word if shlex.quote(bare) == bare else shlex.quote(word)
