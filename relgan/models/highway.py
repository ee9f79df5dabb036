"""The discriminator's highway gating and the dropout after it: f + sigmoid(gate) * (relu(transform) - f),
i.e. t*h + (1-t)*f, then inverted dropout.

``both`` holds the pre-activations of both branches side by side (one matrix product computes them). On CPU
in float32 a fused C++ kernel (``csrc/highway.cpp``, see ``relgan.native``) computes the value and the dropout
in one pass and the backward in another, writing the gradient of ``both`` in place of a concatenation of
two halves. Both paths draw the same dropout bits (``layers.dropout_bits``), so they drop the same elements.
"""

from __future__ import annotations

import torch
from torch import Tensor

from relgan import native
from relgan.models.layers import dropout_bits, dropout_keep_threshold, dropout_scale


def highway(features: Tensor, both: Tensor, dropout: float = 0.0) -> Tensor:
    """features [N, W], both [N, 2W] = (gate | transform) pre-activations -> [N, W], each element dropped
    with probability ``dropout`` (0: no dropout, as in evaluation)."""
    bits = dropout_bits(features.shape, features.device) if dropout > 0 else None
    if native.kernels_for(both.device, both.dtype) and not torch.is_autocast_enabled(both.device.type):
        return _FusedHighway.apply(features, both, bits, dropout)
    return _plain_highway(features, both, bits, dropout)


def _plain_highway(features: Tensor, both: Tensor, bits: Tensor | None, dropout: float) -> Tensor:
    gate, transform = both.chunk(2, dim=-1)
    value = torch.addcmul(features, torch.sigmoid(gate), torch.relu(transform) - features)
    return value if bits is None else value * dropout_scale(bits, dropout).to(value.dtype)


class _FusedHighway(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: Tensor, both: Tensor, bits: Tensor | None, dropout: float) -> Tensor:
        ctx.save_for_backward(features, both, bits)
        ctx.dropout = dropout
        return torch.ops.relgan_highway.forward(features, both, *_dropout_arguments(bits, dropout))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        features, both, bits = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward (the WGAN-GP penalty): differentiate the PyTorch code
            with torch.enable_grad():
                value = _plain_highway(features, both, bits, ctx.dropout)
            return *torch.autograd.grad(value, (features, both), grad, create_graph=True), None, None
        grads = torch.ops.relgan_highway.backward(grad, features, both, *_dropout_arguments(bits, ctx.dropout))
        return *grads, None, None


def _dropout_arguments(bits: Tensor | None, dropout: float) -> tuple[Tensor | None, int, float]:
    """The kernel's (bits or None, keep threshold, scale of kept elements)."""
    if bits is None:
        return None, 0, 1.0
    return bits, dropout_keep_threshold(dropout), 1 / (1 - dropout)
