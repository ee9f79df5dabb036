"""Initialisers and layers shared by the networks, matching the official TensorFlow code."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relgan import native


def truncated_normal_(tensor: Tensor, std: float) -> Tensor:
    """TF's truncated normal: N(0, std^2) redrawn outside two standard deviations."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """The official ``linear()``: weight ~ truncated normal with std 1/sqrt(fan_in), zero bias."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    truncated_normal_(layer.weight, 1 / math.sqrt(in_features))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class JointLayerNorm(nn.Module):
    """``tf.contrib.layers.layer_norm`` on [B, R, F]: statistics over all R*F values of each batch element
    jointly, affine parameters per feature [F]. (``nn.LayerNorm(F)`` would normalise each row alone.)"""

    def __init__(self, features: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x [B, R, F] -> [B, R, F]."""
        rows = x.shape[-2]
        # the affine step inside layer_norm's kernel saves two passes over x
        return F.layer_norm(x, x.shape[-2:], self.weight.expand(rows, -1), self.bias.expand(rows, -1), self.eps)


def padded_linear(x: Tensor, weight: Tensor, bias: Tensor | None, multiple: int = 64) -> Tensor:
    """``F.linear`` with the output width padded to a multiple of ``multiple`` and cut back.

    Matrix kernels run up to 40% faster when the output width is a multiple of the vector width (measured
    on AVX-512 for 4,662 vs 4,672 columns); the extra columns are zeros and never leave this function.
    """
    padded_weight, padded_bias = pad_output_rows(weight, bias, multiple)
    return F.linear(x, padded_weight, padded_bias)[..., : weight.shape[0]]


def pad_output_rows(weight: Tensor, bias: Tensor | None, multiple: int = 64) -> tuple[Tensor, Tensor | None]:
    """weight [out, in] and bias [out] with zero rows appended up to a multiple of ``multiple`` outputs.

    A loop that applies the same layer at every step pads once and slices each step's output.
    """
    pad = -weight.shape[0] % multiple
    if pad == 0:
        return weight, bias
    return F.pad(weight, (0, 0, 0, pad)), F.pad(bias, (0, pad)) if bias is not None else None


def linear_for_steps(weight: Tensor, bias: Tensor | None, rows: int) -> Callable[[Tensor], Tensor]:
    """``x -> F.linear(x, weight, bias)`` for a loop that applies one layer to inputs [rows, in] at every step.

    Without gradients on CPU in float32 (``native.onednn_for``) the weight is packed once into oneDNN's layout,
    whose products at such row counts are faster than ``F.linear``'s MKL sgemm; otherwise ``F.linear``.
    """
    if torch.is_grad_enabled() or not native.onednn_for(weight.device, weight.dtype):
        return lambda x: F.linear(x, weight, bias)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def onednn_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight)`` (no bias) for large products on CPU in float32: x [N, in] -> [N, out].

    Where ``native.onednn_for`` allows, the forward and the input gradient go through oneDNN with the weight
    packed per call, which ran the discriminator's [8192, 1200] x [1200, 2400] highway products faster than
    MKL's sgemm on the 2-core AMD VM; the weight gradient stays with ``torch.mm`` (faster there).
    """
    if not native.onednn_for(weight.device, weight.dtype) or x.dtype != weight.dtype or x.dim() != 2:
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


def unroll_steps(step, inputs: tuple[Tensor, ...], state):
    """Run ``step(step_inputs, state) -> (output [B, O], state)`` over time-major inputs (each [T, B, ...]):
    outputs [B, T, O]."""
    outputs = []
    for step_inputs in zip(*(p.unbind(0) for p in inputs)):
        output, state = step(step_inputs, state)
        outputs.append(output)
    return torch.stack(outputs, dim=1)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout; each element is dropped with probability round(p * 2**16) / 2**16."""
    if not training or p == 0:
        return x
    return x * dropout_scale(dropout_bits(x.shape, x.device), p).to(x.dtype)


def dropout_bits(shape: torch.Size | tuple[int, ...], device: torch.device) -> Tensor:
    """16 random bits per element: int16 [shape].

    They are drawn as 64-bit words: a quarter of the generator calls of one uniform float per element (CPU
    ``rand_like`` took twice as long, ``bernoulli_`` longer).
    """
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)  # all 64 bits
    return words.view(torch.int16)[:count].view(shape)


def dropout_keep_threshold(p: float) -> int:
    """Elements whose bits (``dropout_bits``) are at least this are kept."""
    return round(p * 2**16) - 2**15


def dropout_scale(bits: Tensor, p: float) -> Tensor:
    """The factor of inverted dropout per element of bits [...]: 1 / (1 - p) where kept, 0 where dropped."""
    return torch.where(bits >= dropout_keep_threshold(p), 1 / (1 - p), 0.0)
