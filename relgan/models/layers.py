"""Initialisers and layers shared by the networks, matching the official TensorFlow code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
        return F.layer_norm(x, x.shape[-2:], eps=self.eps) * self.weight + self.bias



def padded_linear(x: Tensor, weight: Tensor, bias: Tensor | None, multiple: int = 64) -> Tensor:
    """``F.linear`` with the output width padded to a multiple of ``multiple`` and cut back.

    Matrix kernels run up to 40% faster when the output width is a multiple of the vector width (measured
    on AVX-512 for 4,662 vs 4,672 columns); the extra columns are zeros and never leave this function.
    """
    out = weight.shape[0]
    pad = -out % multiple
    if pad == 0:
        return F.linear(x, weight, bias)
    weight = F.pad(weight, (0, 0, 0, pad))
    bias = F.pad(bias, (0, pad)) if bias is not None else None
    return F.linear(x, weight, bias)[..., :out]


class _ConvMaxOverTime(torch.autograd.Function):
    """max over t of the filter responses weight . window_t, for every row of a sequence batch.

    Forward runs on row chunks that stay in cache and keeps only the winning time step of every (row,
    filter), never the [rows, time, filters] responses; backward needs just those windows (the gradient
    of a max flows to its argmax) and works tap by tap on the sequence itself.
    """

    @staticmethod
    def forward(ctx, sequence: Tensor, weight: Tensor, size: int, chunk: int) -> Tensor:
        rows, length, width = sequence.shape
        steps = length - size + 1
        windows = sequence.unfold(1, size, 1).reshape(rows, steps, width * size)  # [R, T', d*f], d-major
        weight = weight.to(sequence.dtype)
        values = sequence.new_empty(rows, weight.shape[0])
        index = torch.empty(rows, weight.shape[0], dtype=torch.long, device=sequence.device)
        for start in range(0, rows, chunk):
            # [chunk, filters, time]: reducing over the last (contiguous) axis is the fastest layout
            scores = torch.matmul(weight, windows[start : start + chunk].transpose(1, 2))
            torch.max(scores, dim=2, out=(values[start : start + chunk], index[start : start + chunk]))
        ctx.save_for_backward(sequence, weight, index)
        ctx.size = size
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        sequence, weight, index = ctx.saved_tensors
        size, width = ctx.size, sequence.shape[2]
        grad = grad.to(sequence.dtype)
        taps = weight.view(weight.shape[0], width, size)  # [C, d, f]
        grad_sequence = torch.zeros_like(sequence)
        grad_taps = []
        for k in range(size):
            where = (index + k).unsqueeze(-1).expand(-1, -1, width)  # [R, C, d]: positions of tap k
            grad_taps.append((grad.unsqueeze(-1) * sequence.gather(1, where)).sum(0))  # [C, d]
            grad_sequence.scatter_add_(1, where, grad.unsqueeze(-1) * taps[:, :, k])
        grad_weight = torch.stack(grad_taps, dim=-1).reshape_as(weight).to(weight.dtype)
        return grad_sequence, grad_weight, None, None


def conv_max_over_time(sequence: Tensor, weight: Tensor, size: int, chunk: int = 128) -> Tensor:
    """Valid 1-D convolution of sequence [R, T, d] with filters weight [C, d*size] (d-major), then the
    maximum over time: [R, C]. Equals ``(windows @ weight.T).max(time)`` with windows = sequence.unfold.

    Runs in the sequence's dtype even under autocast (a few FLOPs; its buffers are allocated up front).
    """
    with torch.autocast(sequence.device.type, enabled=False):
        if torch.is_grad_enabled() and (sequence.requires_grad or weight.requires_grad):
            return _ConvMaxOverTime.apply(sequence, weight, size, chunk)
        return _conv_max_values(sequence, weight, size, chunk)


def _conv_max_values(sequence: Tensor, weight: Tensor, size: int, chunk: int) -> Tensor:
    rows, length, width = sequence.shape
    windows = sequence.unfold(1, size, 1).reshape(rows, length - size + 1, width * size)
    w = weight.to(sequence.dtype)  # no gradient needed: skip the argmax bookkeeping
    return torch.cat([torch.matmul(w, windows[i : i + chunk].transpose(1, 2)).amax(dim=2)
                      for i in range(0, rows, chunk)])


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout whose mask comes from one uniform per element (CPU ``bernoulli_`` is ~2x slower)."""
    if not training or p == 0:
        return x
    scale = (torch.rand_like(x) >= p).to(x.dtype).mul_(1 / (1 - p))
    return x * scale
