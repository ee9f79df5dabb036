"""RelGAN (Nie, Narodytska & Patel, ICLR 2019): the sampled token argmax(o + g) is fed back, the discriminator sees
softmax(beta (o + g)), and the generator's gradient flows through that relaxation (Gumbel-Softmax)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from relgan.adversarial import FakeBatch, Network, per_batch
from relgan.algorithms.base import BETA_KEYS, Algorithm, Score, split_fakes
from relgan.draws import Draws
from relgan.losses import gan_losses
from relgan.pytrees import batchable


@batchable
@dataclass
class RelaxedStepDraws:
    """The random draws of one generator step of a relaxed algorithm (B sentences of length T over V tokens)."""

    real: Tensor  # ids [B, T] of a random real batch
    real_labels: Tensor | None  # their classes [B] (conditional models), else None
    fake_labels: Tensor | None  # the classes asked of the generator [B], else None
    noise: Tensor | None  # Gumbel noise [B, T, V]; None: the generator draws it
    real_dropout: Tensor | None  # the discriminator's dropout mask on the real batch; None: it draws its own
    fake_dropout: Tensor | None  # and on the fake batch
    exponentials: Tensor | None = None  # gumbel-rao's K x [B, T, V] conditional Gumbel draws, else None


@batchable
@dataclass
class RelaxedSampleDraws:
    """The random draws of the discriminator steps' fake samples (N = d_steps * B sentences)."""

    labels: Tensor | None  # classes [N], else None
    noise: Tensor | None  # Gumbel noise [N, T, V]; None: the generator draws it


class RelGAN(Algorithm):
    """The relaxed family's iteration; subclasses change :meth:`discriminator_input` (and its draws)."""

    name = "relgan"
    label = "RelGAN"
    summary = "the generator's gradient flows through the relaxation softmax(beta (o + g)) the discriminator sees"
    relaxed = True
    shared_keys = BETA_KEYS
    cuda_graphs = True
    hard = False  # what the discriminator sees of the fake samples: one_hot(argmax) (True) or the relaxation

    def generator_step_draws(self, draws: Draws, size: int) -> RelaxedStepDraws:
        real, real_labels = draws.real_batch(size)
        fake_labels = draws.fake_labels(size)
        exponentials = self.estimator_draws(draws, size)
        noise = draws.gumbel_noise(size)
        real_dropout = draws.dropout_mask(size)
        fake_dropout = draws.dropout_mask(size)
        return RelaxedStepDraws(real, real_labels, fake_labels, noise, real_dropout, fake_dropout, exponentials)

    def estimator_draws(self, draws: Draws, size: int) -> Tensor | None:
        """What the estimator draws itself for ``size`` samples (Gumbel-Rao: its exponentials; None: nothing)."""
        return None

    def discriminator_input(self, generator: Network, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        """The fake samples [B, T, V] as the discriminator sees them, carrying the generator's gradient."""
        _, fake = generator(
            mode="sample",
            batch_size=step.real.shape[0],
            beta=beta,
            hard=self.hard,
            noise=step.noise,
            labels=step.fake_labels,
        )
        return fake

    def generator_loss(
        self, generator: Network, discriminator: Network, beta: Tensor, step: RelaxedStepDraws
    ) -> tuple[Tensor, Tensor]:
        """The GAN loss's generator term on B fresh samples against a real batch."""
        fake = self.discriminator_input(generator, beta, step)
        with torch.no_grad():
            (d_real,) = discriminator(step.real, dropout_mask=step.real_dropout, labels=per_batch(step.real_labels))
        (d_fake,) = discriminator(fake, dropout_mask=step.fake_dropout, labels=per_batch(step.fake_labels))
        g_loss = gan_losses(self.config.loss, d_real, d_fake)[1]
        return g_loss, g_loss

    def sample_draws(self, draws: Draws, count: int) -> RelaxedSampleDraws:
        labels = draws.fake_labels(count)
        return RelaxedSampleDraws(labels, draws.gumbel_noise(count))

    def fake_samples(
        self, generator: Network, beta: Tensor, samples: RelaxedSampleDraws, count: int, size: int
    ) -> list[FakeBatch]:
        _, fake = generator(
            mode="sample",
            batch_size=count * size,
            beta=beta,
            hard=self.hard,
            noise=samples.noise,
            labels=samples.labels,
        )
        return split_fakes(fake, samples.labels, count, size)

    def gradient_estimate(self, generator: Network, score: Score, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        return -torch.sigmoid(score(self.discriminator_input(generator, beta, step), step.fake_labels)).mean()
