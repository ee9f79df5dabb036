"""Gumbel-Max sampling, its Gumbel-Softmax relaxation, and schedules of the inverse temperature beta.

tokens  = argmax(o + g)            an exact sample of softmax(o) (Gumbel-Max), fed back to the generator
relaxed = softmax(beta * (o + g))  what the discriminator sees; beta -> inf approaches one_hot(tokens)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relgan import native


def gumbel_noise(shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel noise -log(-log(u)) in float32, always finite: the noise ``relaxed_sample`` adds.

    With the C++ kernels (CPU): u = (k + 1/2) / 2^23 from a counter-based generator keyed by one int64 drawn
    from ``generator``. Otherwise u ~ U[0, 1) from ``torch.rand``, clamped to the smallest normal float so
    that log(u) is finite; u < 1 keeps -log(u) > 0.
    """
    if native.kernels_for(device, torch.float32):
        rows = math.prod(shape[:-1])
        return torch.ops.relgan_sampling.gumbel_noise(rows, shape[-1], _draw_seed(generator)).view(shape)
    u = torch.rand(shape, device=device, dtype=torch.float32, generator=generator)
    return u.clamp_(min=torch.finfo(torch.float32).tiny).log_().neg_().log_().neg_()


def relaxed_sample(logits: Tensor, beta: float | Tensor, *, hard: bool = False,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Sample tokens and their relaxed one-hot vectors from logits [..., V].

    Returns ``(tokens [...], relaxed [..., V])``. With ``hard=True`` the relaxed output is the
    straight-through estimator: its value is one_hot(tokens), its gradient that of the soft relaxation.
    On CPU the C++ kernel computes noise, argmax and softmax in one pass per row (same noise as
    ``gumbel_noise`` with the same generator state).
    """
    if logits.dim() == 2 and logits.stride(-1) == 1 and native.kernels_for(logits.device, logits.dtype):
        tokens, relaxed = _FusedGumbelSoftmax.apply(logits, beta, _draw_seed(generator))
    else:
        perturbed = gumbel_noise(logits.shape, logits.device, generator).add_(logits)  # float32 o + g
        tokens = perturbed.argmax(dim=-1)
        relaxed = torch.softmax(beta * perturbed, dim=-1)
    return tokens, straight_through(tokens, relaxed) if hard else relaxed


def straight_through(tokens: Tensor, relaxed: Tensor) -> Tensor:
    """The straight-through estimator of tokens [...] and relaxed one-hots [..., V]: the value of
    one_hot(tokens), the gradient of ``relaxed``."""
    one_hot = F.one_hot(tokens, relaxed.shape[-1]).to(relaxed.dtype)
    return one_hot - relaxed.detach() + relaxed


def relaxed_sample_backward(grad: Tensor, relaxed: Tensor, beta: float) -> Tensor:
    """The gradient of the logits [..., V] from that of relaxed = softmax(beta * (o + g)) [..., V] for a constant
    beta: beta * y * (grad - <grad, y>) per row. The C++ kernel's (CPU, float32)."""
    rows = relaxed.reshape(-1, relaxed.shape[-1])
    return torch.ops.relgan_sampling.gumbel_softmax_backward(grad.float().reshape_as(rows), rows, beta).view_as(relaxed)


def categorical_sample(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One exact draw per row of probs [B, V] by inversion: the first index whose CDF exceeds u ~ U(0, 1)."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


def categorical_from_logits(logits: Tensor, temperature: float = 1.0,
                            generator: torch.Generator | None = None) -> Tensor:
    """One exact draw per row from softmax(logits [B, V] / temperature): tokens [B].

    Both paths draw the same u per row from ``generator``; the C++ kernel (CPU) inverts the running sums of
    exp in one pass per row instead of softmax, cumsum and search.
    """
    if logits.dim() == 2 and logits.stride(-1) == 1 and native.kernels_for(logits.device, logits.dtype):
        u = torch.rand(logits.shape[0], generator=generator, dtype=torch.float32, device=logits.device)
        return torch.ops.relgan_sampling.categorical_by_inversion(logits, u, 1.0 / temperature)
    logits = logits.float()
    return categorical_sample(torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1), generator)


class _FusedGumbelSoftmax(torch.autograd.Function):
    """(tokens, softmax(beta * (o + g))) from the C++ kernel; the backward needs only the output (and o + g
    when beta is learned)."""

    @staticmethod
    def forward(ctx, logits: Tensor, beta: float | Tensor, seed: int) -> tuple[Tensor, Tensor]:
        learned = isinstance(beta, Tensor) and beta.requires_grad
        ctx.beta = float(beta)
        tokens, relaxed, perturbed = torch.ops.relgan_sampling.gumbel_softmax(logits, ctx.beta, seed, learned)
        ctx.save_for_backward(relaxed, perturbed)
        ctx.mark_non_differentiable(tokens)
        return tokens, relaxed

    @staticmethod
    def backward(ctx, _: Tensor, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        relaxed, perturbed = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return relaxed_sample_backward(grad, relaxed, ctx.beta), None, None
        # d softmax(beta z) = y * (grad - <grad, y>) * (beta dz + z dbeta)
        unscaled = relaxed_sample_backward(grad, relaxed, 1.0)
        return unscaled * ctx.beta, (unscaled * perturbed).sum(), None


def _draw_seed(generator: torch.Generator | None) -> int:
    """One int64 from ``generator`` (or the global CPU generator): the key of a counter-based noise stream."""
    return int(torch.randint(2**62, (), generator=generator))


def inverse_temperature(schedule: str, step: int, beta_max: float, horizon: int) -> float:
    """beta at adversarial ``step`` (0-based) with the official formulas; N = ``horizon``.

    ``learned`` starts from beta = 1 like the others; its later values come from :class:`LearnedInverseTemperature`.
    """
    i, n, m = step, horizon, beta_max
    if schedule == "no":
        return m
    if schedule == "lin":
        return 1 + i / (n - 1) * (m - 1)
    if schedule == "exp":
        return m ** (i / n)
    if schedule == "log":
        return 1 + (m - 1) / math.log(n) * math.log(i + 1)
    if schedule == "sigmoid":
        return (m - 1) / (1 + math.exp((n / 2 - i) * 20 / n)) + 1
    if schedule == "quad":
        return (m - 1) / (n - 1) ** 2 * i**2 + 1
    if schedule == "sqrt":
        return (m - 1) / math.sqrt(n - 1) * math.sqrt(i) + 1
    if schedule == "learned":
        return 1.0
    raise ValueError(f"unknown beta schedule {schedule!r}")


class LearnedInverseTemperature(nn.Module):
    """A trainable beta = exp(rho) > 0, starting at beta = 1 (rho = 0).

    It is optimised by the generator's adversarial loss (with the generator's optimiser): beta moves in
    whichever direction makes the relaxed samples fool the discriminator more. Its value is logged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rho = nn.Parameter(torch.zeros(()))

    def forward(self) -> Tensor:
        """beta as a 0-dim tensor."""
        return self.rho.exp()
