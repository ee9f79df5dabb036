"""The discriminator's convolution followed by its max over time, without materialising the responses.

For a sequence batch [R, T, d] and filters [C, d*size] (d-major), the value is
``(windows @ weight.T).max(time)`` with ``windows = sequence.unfold(1, size, 1)``; the gradient of the max
flows to its first argmax, as ``torch.max`` does. On CPU a fused C++ kernel (``csrc/conv_max.cpp``, see
``relgan.native``) computes it in one pass per row; elsewhere chunked PyTorch code computes the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from relgan import native


def conv_max_over_time(sequence: Tensor, weight: Tensor, size: int, chunk: int = 128) -> Tensor:
    """Valid 1-D convolution of sequence [R, T, d] with filters weight [C, d*size], then max over time: [R, C].

    Runs in the sequence's dtype even under autocast (a few FLOPs; its buffers are allocated up front).
    ``chunk`` is the row block of the PyTorch path.
    """
    with torch.autocast(sequence.device.type, enabled=False):
        if torch.is_grad_enabled() and (sequence.requires_grad or weight.requires_grad):
            return _ConvMaxOverTime.apply(sequence, weight, size, chunk)
        kernel = _fused_kernel_for(sequence)
        if kernel is not None:
            return kernel.forward(sequence, weight, size)[0]
        return _conv_max_values(sequence, weight, size, chunk)


class _ConvMaxOverTime(torch.autograd.Function):
    """Keeps only the winning time step of every (row, filter); the backward needs just those windows."""

    @staticmethod
    def forward(ctx, sequence: Tensor, weight: Tensor, size: int, chunk: int) -> Tensor:
        kernel = _fused_kernel_for(sequence)
        if kernel is not None:
            values, index = kernel.forward(sequence, weight, size)
        else:
            values, index = _conv_max_with_index(sequence, weight, size, chunk)
        ctx.save_for_backward(sequence, weight, index)
        ctx.size = size
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        sequence, weight, index = ctx.saved_tensors
        kernel = _fused_kernel_for(sequence)
        # a double backward (the WGAN-GP penalty) needs a differentiable backward: the PyTorch one
        if kernel is not None and not torch.is_grad_enabled():
            grad_sequence, grad_weight = kernel.backward(grad, sequence, weight, index, ctx.size)
        else:
            grad_sequence, grad_weight = _conv_max_backward(grad, sequence, weight, index, ctx.size)
        return grad_sequence, grad_weight, None, None


def _conv_max_with_index(sequence: Tensor, weight: Tensor, size: int, chunk: int) -> tuple[Tensor, Tensor]:
    """PyTorch path: row chunks that stay in cache, (values [R, C], first argmax over time [R, C])."""
    rows = sequence.shape[0]
    windows = _windows(sequence, size)
    weight = weight.to(sequence.dtype)
    values = sequence.new_empty(rows, weight.shape[0])
    index = torch.empty(rows, weight.shape[0], dtype=torch.long, device=sequence.device)
    for start in range(0, rows, chunk):
        # [chunk, filters, time]: reducing over the last (contiguous) axis is the fastest layout
        scores = torch.matmul(weight, windows[start : start + chunk].transpose(1, 2))
        torch.max(scores, dim=2, out=(values[start : start + chunk], index[start : start + chunk]))
    return values, index


def _conv_max_values(sequence: Tensor, weight: Tensor, size: int, chunk: int) -> Tensor:
    """PyTorch path without gradients: the values alone, no argmax bookkeeping."""
    windows = _windows(sequence, size)
    w = weight.to(sequence.dtype)
    return torch.cat([torch.matmul(w, windows[i : i + chunk].transpose(1, 2)).amax(dim=2)
                      for i in range(0, sequence.shape[0], chunk)])


def _windows(sequence: Tensor, size: int) -> Tensor:
    """sequence [R, T, d] -> its sliding windows [R, T - size + 1, d*size], d-major like the filters."""
    rows, length, width = sequence.shape
    return sequence.unfold(1, size, 1).reshape(rows, length - size + 1, width * size)


def _conv_max_backward(grad: Tensor, sequence: Tensor, weight: Tensor, index: Tensor,
                       size: int) -> tuple[Tensor, Tensor]:
    """PyTorch backward, tap by tap on the sequence itself; differentiable (for double backward)."""
    width = sequence.shape[2]
    grad = grad.to(sequence.dtype)
    taps = weight.to(sequence.dtype).view(weight.shape[0], width, size)  # [C, d, f]
    grad_sequence = torch.zeros_like(sequence)
    grad_taps = []
    for k in range(size):
        where = (index + k).unsqueeze(-1).expand(-1, -1, width)  # [R, C, d]: positions of tap k
        grad_taps.append((grad.unsqueeze(-1) * sequence.gather(1, where)).sum(0))  # [C, d]
        grad_sequence.scatter_add_(1, where, grad.unsqueeze(-1) * taps[:, :, k])
    grad_weight = torch.stack(grad_taps, dim=-1).reshape_as(weight).to(weight.dtype)
    return grad_sequence, grad_weight


def _fused_kernel_for(sequence: Tensor):
    """The fused ops when they apply to this sequence (CPU, float32/float64), else None."""
    applies = native.kernels_for(sequence.device, sequence.dtype, (torch.float32, torch.float64))
    return torch.ops.relgan_conv_max if applies else None
