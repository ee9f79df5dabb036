"""The adversarial iteration, written once: the generator and discriminator steps as functions of the two networks
and of the iteration's random draws, and the order in which those draws are made.

Adversarial iteration k (0-based) trains with beta(k) of the schedule: g_steps generator updates, then d_steps
discriminator updates, each on a fresh random real batch and fresh generator samples. (The official code trains
iteration k with beta(k-1) and iteration 0 with 1; the difference is one step.)

A single run (``training.Trainer``) calls the step functions with its modules; the batched replicas
(``batched.BatchedReplicas``) call them with ``functional_call`` of stacked weights under ``torch.func.vmap``.
What differs between the two sits behind :class:`IterationSteps` (how a loss becomes an update) and
:class:`relgan.draws.Draws` (where the random numbers come from).

The random draws of an iteration, in the order :func:`adversarial_iteration` asks for them:

1. per generator step (:func:`generator_step_draws`): the real batch, the classes asked of the generator, the
   Gumbel noise of its samples (one [B, V] per time step), the discriminator's dropout mask on the real batch,
   then on the fake batch;
2. before the discriminator steps (:func:`sample_draws`): the classes and the Gumbel noise of all
   d_steps * B fake samples, drawn in one sampling pass;
3. per discriminator step (:func:`discriminator_step_draws`): the real batch, then the dropout mask of the real
   and fake batch together.

A single run leaves the noise and the masks to the models, which draw them where they use them, in this same
order (a fast backend's kernels draw them in their own way); the batched replicas draw every one of them here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.utils import _pytree

from relgan.config import AdversarialConfig
from relgan.draws import Draws
from relgan.losses import gan_losses, gradient_penalty

Network = Callable[..., object]  # a module, or ``functional_call`` of one with given weights


@dataclass
class GeneratorStepDraws:
    """The random draws of one generator step (B sentences of length T over V tokens)."""

    real: Tensor  # ids [B, T] of a random real batch
    real_labels: Tensor | None  # their classes [B] (conditional models), else None
    fake_labels: Tensor | None  # the classes asked of the generator [B], else None
    noise: Tensor | None  # Gumbel noise [B, T, V]; None: the generator draws it
    real_dropout: Tensor | None  # the discriminator's dropout mask on the real batch; None: it draws its own
    fake_dropout: Tensor | None  # and on the fake batch


@dataclass
class SampleDraws:
    """The random draws of the discriminator steps' fake samples (N = d_steps * B sentences)."""

    labels: Tensor | None  # classes [N], else None
    noise: Tensor | None  # Gumbel noise [N, T, V]; None: the generator draws it


@dataclass
class DiscriminatorStepDraws:
    """The random draws of one discriminator step."""

    real: Tensor  # ids [B, T]
    real_labels: Tensor | None  # [B], else None
    dropout: Tensor | None  # the dropout mask of the real and fake batch together; None: drawn by the model


@dataclass
class FakeBatch:
    """A batch of fake samples for one discriminator step."""

    samples: Tensor  # relaxed one-hots [B, T, V]
    labels: Tensor | None  # the classes they were asked for [B], else None


# vmap batches the tensors of these (the replicas' values stacked [K, ...]); a None field stays None
for _batched in (GeneratorStepDraws, SampleDraws, DiscriminatorStepDraws, FakeBatch):
    _pytree.register_dataclass(_batched)


def generator_step_draws(draws: Draws, size: int) -> GeneratorStepDraws:
    real, real_labels = draws.real_batch(size)
    fake_labels = draws.fake_labels(size)
    noise = draws.gumbel_noise(size)
    real_dropout = draws.dropout_mask(size)
    fake_dropout = draws.dropout_mask(size)
    return GeneratorStepDraws(real, real_labels, fake_labels, noise, real_dropout, fake_dropout)


def sample_draws(draws: Draws, count: int) -> SampleDraws:
    labels = draws.fake_labels(count)
    return SampleDraws(labels, draws.gumbel_noise(count))


def discriminator_step_draws(draws: Draws, size: int) -> DiscriminatorStepDraws:
    real, real_labels = draws.real_batch(size)
    return DiscriminatorStepDraws(real, real_labels, draws.dropout_mask(2 * size))


# ---------------------------------------------------------------------------------------------- the steps


def generator_loss(generator: Network, discriminator: Network, beta: Tensor, step: GeneratorStepDraws,
                   config: AdversarialConfig, hard: bool) -> Tensor:
    """The generator's adversarial loss on B fresh samples softmax(beta (o + g)) (their straight-through
    one-hots with ``hard``) against a real batch; the discriminator is a fixed function here."""
    _, fake = generator(mode="sample", batch_size=step.real.shape[0], beta=beta, hard=hard, noise=step.noise,
                        labels=step.fake_labels)
    with torch.no_grad():
        (d_real,) = discriminator(step.real, dropout_mask=step.real_dropout, labels=per_batch(step.real_labels))
    (d_fake,) = discriminator(fake, dropout_mask=step.fake_dropout, labels=per_batch(step.fake_labels))
    return gan_losses(config.loss, d_real, d_fake)[1]


def fake_samples(generator: Network, beta: Tensor, samples: SampleDraws, count: int, size: int,
                 hard: bool) -> list[FakeBatch]:
    """``count`` batches of ``size`` relaxed samples [size, T, V] for the discriminator steps (call without
    gradients; under vmap the batches are [K, size, ...]).

    The generator does not change during the discriminator steps, so their samples are drawn in one pass of
    d_steps * B sentences: the same distribution, far better matrix shapes.
    """
    _, fake = generator(mode="sample", batch_size=count * size, beta=beta, hard=hard, noise=samples.noise,
                        labels=samples.labels)
    labels = [None] * count if samples.labels is None else samples.labels.split(size)
    return [FakeBatch(batch, batch_labels) for batch, batch_labels in zip(fake.split(size), labels)]


def discriminator_loss(discriminator: Network, fake: FakeBatch, step: DiscriminatorStepDraws,
                       config: AdversarialConfig, penalised: Network | None = None) -> Tensor:
    """The discriminator's loss on a real batch and a fake one; with ``adversarial.loss=wgan-gp`` plus the
    gradient penalty, computed through ``penalised`` (the same discriminator without a DDP wrapper, which a
    double backward needs; default ``discriminator``)."""
    d_real, d_fake = discriminator(step.real, fake.samples, dropout_mask=step.dropout,
                                   labels=per_batch(step.real_labels, fake.labels))
    d_loss = gan_losses(config.loss, d_real, d_fake)[0]
    if config.loss == "wgan-gp":
        d_loss = d_loss + gradient_penalty(penalised or discriminator, step.real, fake.samples, config.gp_weight,
                                           step.real_labels)
    return d_loss


def per_batch(*labels: Tensor | None) -> tuple[Tensor, ...] | None:
    """The discriminator's ``labels`` argument: one class-id tensor per batch, or None (unconditional)."""
    return None if labels[0] is None else labels


# ------------------------------------------------------------------------------------------ the iteration


class IterationSteps(Protocol):
    """How one kind of run turns the step functions above into updates (a module and its optimiser, or each
    replica's slice of batched gradients)."""

    def generator_update(self, step: GeneratorStepDraws, scheduled_beta: Tensor) -> tuple[Tensor, Tensor]:
        """One generator update: (loss, gradient norm before clipping)."""
        ...

    def beta(self, scheduled_beta: Tensor) -> Tensor:
        """The beta in effect now: the schedule's, or the learned one (no gradient)."""
        ...

    def fake_batches(self, beta: Tensor, samples: SampleDraws, count: int) -> list[FakeBatch]:
        """``count`` batches of fresh fake samples for the discriminator steps."""
        ...

    def discriminator_update(self, fake: FakeBatch, step: DiscriminatorStepDraws) -> tuple[Tensor, Tensor]:
        """One discriminator update: (loss, gradient norm before clipping)."""
        ...


def adversarial_iteration(steps: IterationSteps, draws: Draws, config: AdversarialConfig,
                          scheduled_beta: Tensor) -> tuple[Tensor, ...]:
    """g_steps generator updates, then d_steps discriminator updates. Each generator step reads beta anew (a
    learned beta changes with every G step). Returns the last (g_loss, d_loss, g_grad_norm, d_grad_norm) and
    the beta of the D steps."""
    size = config.batch_size
    for _ in range(config.g_steps):
        g_loss, g_norm = steps.generator_update(generator_step_draws(draws, size), scheduled_beta)
    beta = steps.beta(scheduled_beta)
    for fake in steps.fake_batches(beta, sample_draws(draws, size * config.d_steps), config.d_steps):
        d_loss, d_norm = steps.discriminator_update(fake, discriminator_step_draws(draws, size))
    return g_loss, d_loss, g_norm, d_norm, beta
