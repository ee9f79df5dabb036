"""Opt-in glibc malloc tuning, applied inside the running process (``mallopt``; no restart).

By default glibc returns freed blocks above a dynamic threshold to the OS, so each large temporary tensor
costs fresh page faults. :func:`tune_malloc` sets the mmap threshold to glibc's maximum (32 MiB on 64-bit
systems) and the trim threshold to 2 GiB, so freed memory is kept for reuse. ``run.malloc_tuning: true`` or
``RELGAN_MALLOC_TUNING=1`` turns it on; its measured effect is in docs/performance.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger("relgan")

VARIABLE = "RELGAN_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's upper limit for it on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def tune_malloc() -> bool:
    """Apply the settings on glibc; False (and a warning) where they cannot be applied."""
    if platform.libc_ver()[0] != "glibc":
        logger.warning("malloc tuning needs glibc; this system has %s", platform.libc_ver()[0] or "another libc")
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        logger.warning("glibc refused the malloc settings (mallopt)")
    return ok
