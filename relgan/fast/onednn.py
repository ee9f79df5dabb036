"""Matrix products through oneDNN with packed weights (``torch.ops.mkldnn``), for CPU float32.

At 64 to 1,000 rows oneDNN's fp32 products with the weight packed into its blocked layout ran faster than
MKL's sgemm on the 2-core AMD VM (``bench/cpu_kernels.py``); the RMC kernel uses them for its per-step
products, the fast generator for its output layer in sampling and the fast discriminator for its highway.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fp32 products with packed weights."""
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, op) for op in ("_linear_pointwise", "_reorder_linear_weight")
    )


def linear_for_steps(weight: Tensor, bias: Tensor | None, rows: int) -> Callable[[Tensor], Tensor]:
    """``x -> F.linear(x, weight, bias)`` for a loop applying one layer to inputs [rows, in] at every step:
    without gradients the weight is packed once for oneDNN; with gradients (or without oneDNN) ``F.linear``."""
    if torch.is_grad_enabled() or not onednn_available():
        return lambda x: F.linear(x, weight, bias)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def onednn_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight)`` (no bias) for large products: x [N, in] -> [N, out].

    The forward and the input gradient go through oneDNN with the weight packed per call, which ran the
    discriminator's [8192, 1200] x [1200, 2400] highway products faster than MKL's sgemm on the 2-core AMD VM;
    the weight gradient stays with ``torch.mm`` (faster there).
    """
    if not onednn_available() or x.dim() != 2:
        return F.linear(x, weight)
    return _OneDNNLinear.apply(x, weight)


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _onednn_product(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward (the WGAN-GP penalty): differentiable products
            return grad @ weight, grad.t() @ x
        grad_x = _onednn_product(grad, weight.t()) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t() @ x if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight


def _onednn_product(x: Tensor, weight: Tensor) -> Tensor:
    """x [N, in] @ weight [out, in].T through oneDNN, the weight packed for N rows."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), x.shape[0])
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, None, "none", [], "")


def padded_rows(weight: Tensor, bias: Tensor | None, multiple: int = 64) -> tuple[Tensor, Tensor | None]:
    """weight [out, in] and bias [out] with zero rows appended up to a multiple of ``multiple`` outputs.

    Matrix kernels ran up to 40% faster when the output width is a multiple of the vector width (measured on
    AVX-512 for 4,662 vs 4,672 columns); the extra outputs are zeros and are cut off by the callers.
    """
    pad = -weight.shape[0] % multiple
    if pad == 0:
        return weight, bias
    return F.pad(weight, (0, 0, 0, pad)), F.pad(bias, (0, pad)) if bias is not None else None
