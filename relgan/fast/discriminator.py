"""The discriminator's fast path on CPU float32: :func:`classify` replaces ``Discriminator.classify``.

* convolution + max over time in one C++ pass per row (``csrc/conv_max.cpp``), the [rows, time, filters]
  responses never written to memory (for representations 16 or more wide, as SeqGAN's single 64-wide one:
  matrix products of the unfolded windows, block by block); relu and the bias applied after the max (they
  commute with it);
* both highway branches in one oneDNN product;
* highway gating and dropout in one C++ pass forward and one backward (``csrc/highway.cpp``), the dropout
  drawn as 16 random bits per element (or taken from the reference's mask when one is passed in).

Double backward (the WGAN-GP penalty) differentiates PyTorch code that computes the same backward as the
kernels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from relgan.fast.build import Kernels
from relgan.fast.onednn import onednn_linear
from relgan.models.discriminator import Discriminator


def applies(embedded: Tensor, discriminator: Discriminator) -> bool:
    """CPU float32 input and weights, no autocast."""
    return (
        embedded.device.type == "cpu"
        and embedded.dtype == torch.float32
        and discriminator.embedding.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def classify(
    discriminator: Discriminator,
    kernels: Kernels,
    embedded: Tensor,
    dropout_mask: Tensor | None = None,
    labels: Tensor | None = None,
) -> Tensor:
    """``Discriminator.classify``: embedded [B, T, S*d] (and the sentences' classes [B] for a conditional
    discriminator) -> logits [B*S]. The output layers and the projection term are the reference's."""
    if not applies(embedded, discriminator):
        return Discriminator.classify(discriminator, embedded, dropout_mask, labels)
    d = discriminator
    batch, length, _ = embedded.shape
    s, width = d.num_representations, d.representation_dim
    per_rep = embedded.view(batch, length, s, width).permute(0, 2, 1, 3).reshape(batch * s, length, width)
    pooled = [
        torch.relu(conv_max_over_time(kernels, per_rep, weight, size) + bias)
        for size, weight, bias in zip(d.filter_sizes, d.conv_weights, d.conv_biases, strict=True)
    ]
    features = torch.cat(pooled, dim=-1)  # [B*S, filters * len(sizes)]
    both = onednn_linear(features, torch.cat([d.highway_gate.weight, d.highway_transform.weight]))
    p = d.config.dropout if d.training else 0.0
    features = highway(kernels, features, both, p, dropout_mask)
    return d.output_logits(features, labels)


# ------------------------------------------------------------------------------------- conv + max over time


def conv_max_over_time(kernels: Kernels, sequence: Tensor, weight: Tensor, size: int) -> Tensor:
    """Valid 1-D convolution of sequence [R, T, d] with filters weight [C, d*size] (d-major), then max over
    time: [R, C]. The gradient of the max flows to the first argmax."""
    if sequence.shape[2] >= PRODUCT_WIDTH:
        return _conv_max_by_products(sequence, weight, size)
    if torch.is_grad_enabled() and (sequence.requires_grad or weight.requires_grad):
        return _ConvMaxOverTime.apply(kernels, sequence, weight, size)
    return kernels.conv_max.forward(sequence, weight, size)[0]


# From this representation width on, the convolution is one matrix product per block of rows (its windows
# unfolded): at SeqGAN's width 64 it took 0.25 s against the kernel's 0.72 s for 19,456 sentences and 200 filters
# of height 5 (2-core AVX-512 VM); at RelGAN's width 1 the kernel is 20-30x faster.
PRODUCT_WIDTH = 16
_BLOCK_FLOATS = 1 << 21  # unfolded windows per block: 8 MB, which kept the products fastest


def _conv_max_by_products(sequence: Tensor, weight: Tensor, size: int) -> Tensor:
    """The convolution as products of the unfolded windows [rows * (T - size + 1), d*size] with the filters,
    block by block of rows, then the max over time (plain autograd)."""
    _, length, width = sequence.shape
    positions, depth = length - size + 1, width * size
    block = max(1, _BLOCK_FLOATS // (positions * depth))
    pooled = []
    for part in sequence.split(block):
        windows = part.unfold(1, size, 1).reshape(-1, depth)  # [r * positions, d*size], d-major like the filters
        pooled.append((windows @ weight.t()).view(part.shape[0], positions, -1).max(dim=1).values)
    return torch.cat(pooled)


class _ConvMaxOverTime(torch.autograd.Function):
    """Keeps only the winning time step of every (row, filter); the backward needs just those windows."""

    @staticmethod
    def forward(ctx, kernels: Kernels, sequence: Tensor, weight: Tensor, size: int) -> Tensor:
        values, index = kernels.conv_max.forward(sequence, weight, size)
        ctx.save_for_backward(sequence, weight, index)
        ctx.kernels, ctx.size = kernels, size
        return values

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        sequence, weight, index = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward (WGAN-GP) needs a differentiable backward
            grad_sequence, grad_weight = _conv_max_backward(grad, sequence, weight, index, ctx.size)
        else:
            grad_sequence, grad_weight = ctx.kernels.conv_max.backward(grad, sequence, weight, index, ctx.size)
        return None, grad_sequence, grad_weight, None


def _conv_max_backward(
    grad: Tensor, sequence: Tensor, weight: Tensor, index: Tensor, size: int
) -> tuple[Tensor, Tensor]:
    """The kernel's backward in PyTorch, tap by tap on the sequence itself; differentiable."""
    width = sequence.shape[2]
    taps = weight.view(weight.shape[0], width, size)  # [C, d, f]
    grad_sequence = torch.zeros_like(sequence)
    grad_taps = []
    for k in range(size):
        where = (index + k).unsqueeze(-1).expand(-1, -1, width)  # [R, C, d]: positions of tap k
        grad_taps.append((grad.unsqueeze(-1) * sequence.gather(1, where)).sum(0))  # [C, d]
        grad_sequence = grad_sequence.scatter_add(1, where, grad.unsqueeze(-1) * taps[:, :, k])
    return grad_sequence, torch.stack(grad_taps, dim=-1).reshape_as(weight)


# ---------------------------------------------------------------------------------------- highway + dropout


def highway(
    kernels: Kernels, features: Tensor, both: Tensor, dropout: float, dropout_mask: Tensor | None = None
) -> Tensor:
    """features [N, W], both [N, 2W] = (gate | transform) pre-activations -> (t*relu(transform) + (1-t)*f)
    times the dropout multipliers (``dropout_mask`` [N, W], or drawn here when None), t = sigmoid(gate)."""
    bits = None
    if dropout > 0:
        bits = dropout_bits(features.shape) if dropout_mask is None else _bits_of_mask(dropout_mask)
    return _FusedHighway.apply(kernels, features, both, bits, dropout)


def dropout_bits(shape: torch.Size | tuple[int, ...]) -> Tensor:
    """16 random bits per element: int16 [shape]; kept where bits >= :func:`dropout_keep_threshold`.

    They are drawn as 64-bit words: a quarter of the generator calls of one uniform float per element (CPU
    ``rand_like`` took twice as long, ``bernoulli_`` longer). Each element is dropped with probability
    round(p * 2^16) / 2^16.
    """
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits
    return words.view(torch.int16)[:count].view(shape)


def dropout_keep_threshold(p: float) -> int:
    """Elements whose bits (:func:`dropout_bits`) are at least this are kept."""
    return round(p * 2**16) - 2**15


def _bits_of_mask(mask: Tensor) -> Tensor:
    """The bits that keep exactly the nonzero elements of a dropout mask, for every p in (0, 1)."""
    return torch.where(mask != 0, 2**15 - 1, -(2**15)).to(torch.int16)


def _highway_backward(
    grad: Tensor, features: Tensor, both: Tensor, bits: Tensor | None, dropout: float
) -> tuple[Tensor, Tensor]:
    """The kernel's backward in PyTorch, differentiable in all its inputs (a double backward): the gradients
    of value = (f + t * (relu(transform) - f)) * scale, t = sigmoid(gate), w.r.t. f and (gate | transform)."""
    gate, transform = both.chunk(2, dim=-1)
    if bits is not None:
        grad = grad * torch.where(bits >= dropout_keep_threshold(dropout), 1 / (1 - dropout), 0.0).to(grad.dtype)
    t = torch.sigmoid(gate)
    grad_gate = grad * (torch.relu(transform) - features) * t * (1 - t)
    grad_transform = grad * t * (transform > 0).to(grad.dtype)
    return grad * (1 - t), torch.cat([grad_gate, grad_transform], dim=-1)


class _FusedHighway(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels: Kernels, features: Tensor, both: Tensor, bits: Tensor | None, dropout: float) -> Tensor:
        ctx.save_for_backward(features, both, bits)
        ctx.kernels, ctx.dropout = kernels, dropout
        return kernels.highway.forward(features, both, *_dropout_arguments(bits, dropout))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        features, both, bits = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward (WGAN-GP) needs a differentiable backward
            return None, *_highway_backward(grad, features, both, bits, ctx.dropout), None, None
        grads = ctx.kernels.highway.backward(grad, features, both, *_dropout_arguments(bits, ctx.dropout))
        return None, *grads, None, None


def _dropout_arguments(bits: Tensor | None, dropout: float) -> tuple[Tensor | None, int, float]:
    """The kernel's (bits or None, keep threshold, scale of kept elements)."""
    if bits is None:
        return None, 0, 1.0
    return bits, dropout_keep_threshold(dropout), 1 / (1 - dropout)
