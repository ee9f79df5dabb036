"""Process start-up: glibc malloc settings that suit large, short-lived tensors (no heavy imports here)."""

from __future__ import annotations

import os
import platform
import sys

MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=17179869184"


def restart_with_malloc_tuning() -> None:
    """On glibc, restart this process once so that large freed tensors are reused, not unmapped.

    By default glibc returns every block over a (dynamic) threshold to the OS, so each large temporary
    tensor costs fresh page faults; on 2 CPU cores that made element-wise ops 1.5-4x slower and a
    paper-size adversarial iteration ~10% slower (bench/train_speed.py). Set RELGAN_MALLOC_TUNED=1 to skip.
    """
    if sys.platform != "linux" or os.environ.get("RELGAN_MALLOC_TUNED") or platform.libc_ver()[0] != "glibc":
        return
    tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), MALLOC_TUNABLES]))
    env = dict(os.environ, RELGAN_MALLOC_TUNED="1", GLIBC_TUNABLES=tunables)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
