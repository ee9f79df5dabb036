"""Gumbel-Max sampling, its Gumbel-Softmax relaxation, and schedules of the inverse temperature beta.

tokens  = argmax(o + g)            an exact sample of softmax(o) (Gumbel-Max), fed back to the generator
relaxed = softmax(beta * (o + g))  what the discriminator sees; beta -> inf approaches one_hot(tokens)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def gumbel_noise(
    shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """Standard Gumbel noise -log(-log(u)) in float32, u ~ U[0, 1), always finite.

    u is clamped to the smallest normal float so that log(u) is finite; u < 1 keeps -log(u) > 0.
    """
    u = torch.rand(shape, device=device, dtype=torch.float32, generator=generator)
    return -torch.log(-torch.log(u.clamp(min=torch.finfo(torch.float32).tiny)))


def relaxed_sample(
    logits: Tensor, beta: float | Tensor, noise: Tensor | None = None, *, hard: bool = False
) -> tuple[Tensor, Tensor]:
    """Sample tokens and their relaxed one-hot vectors from logits [..., V].

    ``noise`` [..., V] is the Gumbel noise g (drawn with :func:`gumbel_noise` when None). Returns
    ``(tokens [...], relaxed [..., V])``, relaxed in float32 or wider. With ``hard=True`` the relaxed output is the
    straight-through estimator: its value is one_hot(tokens), its gradient that of the soft relaxation.
    """
    if noise is None:
        noise = gumbel_noise(logits.shape, logits.device)
    perturbed = logits + noise  # float32 noise promotes half-precision logits
    tokens = perturbed.argmax(dim=-1)
    relaxed = torch.softmax(beta * perturbed, dim=-1)
    return tokens, straight_through(tokens, relaxed) if hard else relaxed


def straight_through(tokens: Tensor, relaxed: Tensor) -> Tensor:
    """The straight-through estimator of tokens [...] and relaxed one-hots [..., V]: the value of
    one_hot(tokens), the gradient of ``relaxed``."""
    # a scatter, not F.one_hot, which torch.func.vmap cannot batch (run.replicas=batched)
    one_hot = torch.zeros_like(relaxed).scatter(-1, tokens.unsqueeze(-1), 1.0)
    return one_hot - relaxed.detach() + relaxed


def categorical_sample(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One exact draw per row of probs [B, V] by inversion: the first index whose CDF exceeds u ~ U(0, 1).

    One uniform per row (not V Gumbel variables): a fast backend draws the same u and inverts the same CDF.
    """
    u = torch.rand(probs.shape[0], generator=generator, dtype=torch.float32, device=probs.device)
    return inverse_cdf_sample(probs, u)


def inverse_cdf_sample(probs: Tensor, u: Tensor) -> Tensor:
    """The draws [B] of probs [B, V] (unnormalised) given one uniform u [B] in [0, 1) per row: the first index
    whose CDF exceeds u."""
    cdf = probs.cumsum(dim=-1)
    scaled = (u.to(probs.dtype) * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, scaled, right=True).squeeze(1).clamp(max=probs.shape[1] - 1)


def conditional_gumbel(logits: Tensor, tokens: Tensor, exponentials: Tensor) -> Tensor:
    """Gumbel noise g [K, ..., V] drawn given that argmax(logits + g) = tokens (Paulus, Maddison & Krause 2021,
    after Maddison et al.): K draws from K x [..., V] standard exponentials E, independent of the logits.
    logits [..., V], tokens [...]. No gradient flows to the logits through g (:func:`conditional_perturbation`).
    """
    logits = logits.detach().float()
    return conditional_perturbation(logits, tokens, exponentials) - logits


def conditional_perturbation(logits: Tensor, tokens: Tensor, exponentials: Tensor) -> Tensor:
    """The perturbed logits o + g [K, ..., V] with g drawn given that argmax(o + g) = tokens, as a differentiable
    function of the logits o [..., V] (REBAR's reparameterisation of z given b), from K x [..., V] standard
    exponentials E; tokens [...].

    With Z = sum_j exp(o_j) and i the token, the perturbed maximum o_i + g_i = log Z - log E_i is a Gumbel
    with location log Z, and every other o_j + g_j = -log(E_j exp(-o_j) + E_i / Z) is a Gumbel with location
    o_j truncated below it.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    chosen = torch.zeros_like(logits).scatter(-1, tokens.unsqueeze(-1), 1.0)
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    top = log_z - torch.log((exponentials * chosen).sum(dim=-1, keepdim=True))  # [K, ..., 1]
    others = -torch.logaddexp(torch.log(exponentials) - logits, -top)
    return torch.where(chosen.bool(), top, others)


def gumbel_rao(logits: Tensor, tokens: Tensor, beta: float | Tensor, exponentials: Tensor) -> Tensor:
    """The Gumbel-Rao estimator of the one-hots of ``tokens`` [...]: the value of one_hot(tokens), the gradient of
    the mean over K of softmax(beta (o + g_k)), g_k drawn given the tokens (:func:`conditional_gumbel`).

    logits o [..., V] carry the gradient; exponentials [K, ..., V]. With K = 1 this has the distribution of
    straight-through's gradient; the mean over K is its conditional expectation given the tokens.
    """
    noise = conditional_gumbel(logits, tokens, exponentials)
    surrogate = torch.softmax(beta * (logits.unsqueeze(0) + noise), dim=-1).mean(dim=0)
    return straight_through(tokens, surrogate)


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
