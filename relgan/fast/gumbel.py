"""The C++ sampling kernels: Gumbel-Softmax in one pass per row, its backward, and inversion sampling.

They compute ``relgan.gumbel``'s functions: :func:`relaxed_sample` draws its Gumbel noise from a counter-based
generator keyed by one int64 of the torch generator (u = (k + 1/2) / 2^23: the same distribution as the
reference's ``gumbel_noise``, another stream); :func:`categorical_from_logits` inverts the same uniforms as the
reference's sampling of softmax(o / temperature) (``Generator.sample_tokens`` with a decoding rule that does not
truncate).
"""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.fast.build import Kernels


def relaxed_sample(
    kernels: Kernels, logits: Tensor, beta: float | Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(tokens [B], softmax(beta * (o + g)) [B, V]) of float32 logits [B, V] with contiguous rows."""
    return _FusedGumbelSoftmax.apply(kernels, logits, beta, draw_seed(generator))


def gumbel_noise(kernels: Kernels, rows: int, length: int, seed: int) -> Tensor:
    """The noise [rows, length] that the fused Gumbel-Softmax of ``seed`` adds to the logits."""
    return kernels.sampling.gumbel_noise(rows, length, seed)


def relaxed_sample_backward(kernels: Kernels, grad: Tensor, relaxed: Tensor, beta: float) -> Tensor:
    """The gradient of the logits [..., V] from that of relaxed = softmax(beta * (o + g)) [..., V] for a constant
    beta: beta * y * (grad - <grad, y>) per row."""
    rows = relaxed.reshape(-1, relaxed.shape[-1])
    return kernels.sampling.gumbel_softmax_backward(grad.float().reshape_as(rows), rows, beta).view_as(relaxed)


def categorical_from_logits(
    kernels: Kernels, logits: Tensor, temperature: float, generator: torch.Generator | None
) -> Tensor:
    """One draw per row from softmax(logits [B, V] / temperature) with the reference's uniforms: tokens [B]."""
    u = torch.rand(logits.shape[0], generator=generator, dtype=torch.float32, device=logits.device)
    return kernels.sampling.categorical_by_inversion(logits, u, 1.0 / temperature)


def draw_seed(generator: torch.Generator | None) -> int:
    """One int64 from ``generator`` (or the global CPU generator): the key of a counter-based noise stream."""
    return int(torch.randint(2**62, (), generator=generator))


class _FusedGumbelSoftmax(torch.autograd.Function):
    """(tokens, softmax(beta * (o + g))) from the C++ kernel; the backward needs only the output (and o + g
    when beta is learned)."""

    @staticmethod
    def forward(ctx, kernels: Kernels, logits: Tensor, beta: float | Tensor, seed: int) -> tuple[Tensor, Tensor]:
        learned = isinstance(beta, Tensor) and beta.requires_grad
        ctx.kernels, ctx.beta = kernels, float(beta)
        tokens, relaxed, perturbed = kernels.sampling.gumbel_softmax(logits, ctx.beta, seed, learned)
        ctx.save_for_backward(relaxed, perturbed)
        ctx.mark_non_differentiable(tokens)
        return tokens, relaxed

    @staticmethod
    def backward(ctx, _: Tensor, grad: Tensor) -> tuple[Tensor | None, ...]:
        relaxed, perturbed = ctx.saved_tensors
        if not ctx.needs_input_grad[2]:
            return None, relaxed_sample_backward(ctx.kernels, grad, relaxed, ctx.beta), None, None
        # d softmax(beta z) = y * (grad - <grad, y>) * (beta dz + z dbeta)
        unscaled = relaxed_sample_backward(ctx.kernels, grad, relaxed, 1.0)
        return None, unscaled * ctx.beta, (unscaled * perturbed).sum(), None
