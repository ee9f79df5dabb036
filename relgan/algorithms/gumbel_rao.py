"""Gumbel-Rao (Paulus, Maddison & Krause, ICLR 2021, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator"): straight-through's forward pass (the discriminator sees one_hot(x)), and a backward pass
that averages the relaxation's gradient over K Gumbel draws conditioned on the sampled tokens. Its expectation is
straight-through's; its variance is no larger."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from relgan.adversarial import Network
from relgan.algorithms.relgan import RelaxedStepDraws
from relgan.algorithms.straight_through import StraightThrough
from relgan.draws import Draws
from relgan.gumbel import gumbel_rao
from relgan.pytrees import batchable


@batchable
@dataclass
class RaoStepDraws(RelaxedStepDraws):
    exponentials: Tensor | None = None  # K x [B, T, V] standard exponentials: the conditional Gumbel draws


class GumbelRao(StraightThrough):
    name = "gumbel-rao"
    cuda_graphs = False

    def generator_step_draws(self, draws: Draws, size: int) -> RaoStepDraws:
        real, real_labels = draws.real_batch(size)
        fake_labels = draws.fake_labels(size)
        exponentials = draws.exponentials((self.config.rao_samples, size))
        noise = draws.gumbel_noise(size)
        real_dropout = draws.dropout_mask(size)
        fake_dropout = draws.dropout_mask(size)
        return RaoStepDraws(real, real_labels, fake_labels, noise, real_dropout, fake_dropout, exponentials)

    def discriminator_input(self, generator: Network, beta: Tensor, step: RaoStepDraws) -> Tensor:
        """Tokens sampled without a graph, then the logits that drew them by teacher forcing, whose gradient the
        Rao-Blackwellised relaxation carries."""
        with torch.no_grad():
            tokens, _ = generator(mode="sample", batch_size=step.real.shape[0], beta=beta, noise=step.noise,
                                  labels=step.fake_labels)
        logits = generator(tokens, labels=step.fake_labels)
        return gumbel_rao(logits, tokens, beta, step.exponentials)
