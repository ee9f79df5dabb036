"""The project's C++ CPU kernels (``relgan/csrc``): built once per machine on first use, and when they apply.

They compute the same functions as the PyTorch code they replace, faster on CPU: the relational memory
(``models/relational_memory.py``), the cross-entropy of teacher forcing (``models/cross_entropy.py``), the
discriminator's convolution + max over time (``models/conv_max.py``) and highway gating
(``models/highway.py``), and the samplers' Gumbel-softmax and inversion (``gumbel.py``). Without a C++
compiler, on other devices, or with ``RELGAN_CPU_KERNELS=0`` the PyTorch code runs instead (one warning when
the build fails). The same switch turns off the other CPU fast path: small matrix products through oneDNN
with packed weights (``onednn_for``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
from pathlib import Path

import torch

logger = logging.getLogger("relgan")

SOURCES = sorted((Path(__file__).with_name("csrc")).glob("*.cpp"))
DISABLE_VARIABLE = "RELGAN_CPU_KERNELS"

_pytorch_only = False


def kernels_for(device: torch.device | str, dtype: torch.dtype,
                dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> bool:
    """Whether the C++ kernels apply to tensors on ``device`` of ``dtype``: CPU, one of ``dtypes``, built
    and enabled."""
    return (not _pytorch_only and torch.device(device).type == "cpu" and dtype in dtypes
            and kernels_available())


@functools.cache
def kernels_available() -> bool:
    """Build (once per machine, cached by torch) and load the kernels; False if disabled or the build fails."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return False
    try:
        from torch.utils.cpp_extension import load

        # -march=native code must not be reused on another CPU (shared home directories): key the build by it
        load(name=f"relgan_cpu_{_build_key()}", sources=[str(source) for source in SOURCES],
             is_python_module=False, extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"])
    except Exception as exc:  # no compiler, no ninja, a read-only cache: all mean "use the PyTorch path"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning("C++ CPU kernels unavailable (%s); using the slower PyTorch code", reason[:200])
        return False
    return True


def onednn_for(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether products on ``device`` in ``dtype`` may go through oneDNN with packed weights: CPU, float32,
    a torch build with oneDNN, and not switched off (``RELGAN_CPU_KERNELS=0``, :func:`pytorch_path`)."""
    return (not _pytorch_only and os.environ.get(DISABLE_VARIABLE, "1") != "0" and torch.device(device).type == "cpu"
            and dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and onednn_available())


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fp32 products with packed weights (``torch.ops.mkldnn``). At 64 to
    1,000 rows they ran faster than MKL's sgemm on the 2-core AMD VM (bench/cpu_kernels.py)."""
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, op) for op in ("_linear_pointwise", "_reorder_linear_weight"))


@contextlib.contextmanager
def pytorch_path():
    """Within this block, compute with the PyTorch code even where a C++ kernel applies (to compare)."""
    global _pytorch_only
    previous, _pytorch_only = _pytorch_only, True
    try:
        yield
    finally:
        _pytorch_only = previous


def _build_key() -> str:
    """A key of the CPU's flags (torch itself rebuilds when a source changes)."""
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    return hashlib.sha1(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]
