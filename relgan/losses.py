"""GAN losses on discriminator logits [B*S] (means over all logits), as in RelGAN's ``get_losses``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gan_losses(kind: str, d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """(discriminator loss, generator loss) for logits of real and fake batches, each [B*S].

    RSGAN pairs real logit i with fake logit i (same sentence position and representation).
    For ``wgan-gp`` the gradient penalty is added separately (:func:`gradient_penalty`).
    softplus(-x) = BCE(x, 1) = -log sigmoid(x) and softplus(x) = BCE(x, 0).
    """
    r, f = d_real.float(), d_fake.float()
    if kind == "rsgan":
        return F.softplus(f - r).mean(), F.softplus(r - f).mean()
    if kind in ("standard", "js", "kl"):
        d_loss = F.softplus(-r).mean() + F.softplus(f).mean()
        g_loss = {"standard": F.softplus(-f).mean(), "js": -F.softplus(f).mean(), "kl": (-f).mean()}[kind]
        return d_loss, g_loss
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean(), -f.mean()
    if kind == "tv":
        return (torch.tanh(f) - torch.tanh(r)).mean(), -torch.tanh(f).mean()
    if kind == "wgan-gp":
        return f.mean() - r.mean(), -f.mean()
    if kind == "ls":
        return ((r - 1) ** 2).mean() + (f**2).mean(), ((f - 1) ** 2).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def penalty(kind: str) -> Callable[..., Tensor] | None:
    """The term a loss adds to the discriminator's loss, called as
    ``penalty(discriminator, real_ids, fake, weight, labels)`` (None: it adds none). WGAN-GP's gradient penalty
    draws its interpolation weights inside the step."""
    return gradient_penalty if kind == "wgan-gp" else None


def gradient_penalty(
    discriminator: nn.Module, real_ids: Tensor, fake: Tensor, weight: float, labels: Tensor | None = None
) -> Tensor:
    """weight * mean_b (||dD(x_hat)/dx_hat||_2 - 1)^2 with x_hat = a*one_hot(real) + (1-a)*fake, a ~ U(0,1) per b.

    ``discriminator`` maps one-hots [B, T, V] to a 1-tuple of logits [B*S]; gradients of all S logits of a
    sentence are summed, as ``tf.gradients`` does in the official code. A conditional discriminator scores the
    interpolates as of the real sentences' classes ``labels`` [B].
    """
    alpha = torch.rand(real_ids.shape[0], 1, 1, device=fake.device)
    one_hot = F.one_hot(real_ids, fake.shape[-1]).to(fake.dtype)
    mixed = (alpha * one_hot + (1 - alpha) * fake.detach()).requires_grad_(True)
    (logits,) = discriminator(mixed) if labels is None else discriminator(mixed, labels=(labels,))
    (grad,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
    slopes = grad.float().pow(2).sum(dim=(1, 2)).sqrt()
    return weight * ((slopes - 1) ** 2).mean()
