"""Straight-through Gumbel-Softmax (Jang, Gu & Poole 2017; Bengio et al. 2013): the discriminator sees the one-hot
of the sampled token, and the gradient is the relaxation's, softmax(beta (o + g)), as if the one-hot were it.

:class:`TeacherForced` is the base of the estimators that keep straight-through's forward pass and change its
backward pass: each is a function of the logits that drew the tokens and the tokens."""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.adversarial import Network
from relgan.algorithms.relgan import RelaxedStepDraws, RelGAN


class StraightThrough(RelGAN):
    name = "straight-through"
    label = "ST"
    summary = "the discriminator sees one_hot(x); the backward pass is the relaxation's"
    hard = True
    legacy_switch = "gumbel.straight_through"


class TeacherForced(StraightThrough):
    """Tokens sampled without a graph, then the logits that drew them by teacher forcing (the same logits: the
    tokens were fed back), and the one-hots the discriminator sees from :meth:`estimate`."""

    def discriminator_input(self, generator: Network, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        with torch.no_grad():
            tokens, _ = generator(
                mode="sample", batch_size=step.real.shape[0], beta=beta, noise=step.noise, labels=step.fake_labels
            )
        logits = generator(tokens, labels=step.fake_labels)
        return self.estimate(logits, tokens, beta, step)

    def estimate(self, logits: Tensor, tokens: Tensor, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        """The one-hots of tokens [B, T] as the discriminator sees them [B, T, V], carrying this estimator's
        gradient to logits [B, T, V]."""
        raise NotImplementedError
