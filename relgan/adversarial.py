"""The adversarial iteration, written once: g_steps generator updates, then d_steps discriminator updates, each
on a fresh random real batch and fresh generator samples, as functions of the two networks and of the iteration's
random draws. How the generator's loss is computed is the algorithm's (relgan/algorithms, ``adversarial.algorithm``).

Adversarial iteration k (0-based) trains with beta(k) of the schedule. (The official code trains iteration k with
beta(k-1) and iteration 0 with 1; the difference is one step.)

A single run (``training.Trainer``) calls these functions with its modules; the batched replicas
(``batched.BatchedReplicas``) with ``functional_call`` of stacked weights under ``torch.func.vmap`` (:class:`Bound`).
What differs between the two sits behind :class:`IterationSteps` (how a loss becomes an update) and
:class:`relgan.draws.Draws` (where the random numbers come from).

The random draws of an iteration, in the order :func:`adversarial_iteration` asks for them:

1. per generator step: the algorithm's ``generator_step_draws`` (RelGAN: the real batch, the classes asked of the
   generator, the Gumbel noise of its samples (one [B, V] per time step), the discriminator's dropout mask on the
   real batch, then on the fake batch);
2. before the discriminator steps: the algorithm's ``sample_draws`` of all d_steps * B fake samples (RelGAN: their
   classes and Gumbel noise), drawn in one sampling pass;
3. per discriminator step (:func:`discriminator_step_draws`): the real batch, then the dropout mask of the real
   and fake batch together.

Within each, what the iteration draws itself comes first, then what the models may draw where they use it (Gumbel
noise, dropout masks), in the order of use. A single run leaves the latter to the models (a fast backend's
kernels draw them in their own way); the batched replicas draw every one of them here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn
from torch.func import functional_call

from relgan.config import AdversarialConfig
from relgan.draws import Draws
from relgan.losses import gan_losses, penalty
from relgan.pytrees import batchable
from relgan.runtime import evaluating

Network = Callable[..., Any]  # a module (or its DDP wrapper), or a :class:`Bound` one


class Bound:
    """``module`` called with ``weights`` in place of its own (``functional_call``): a batched replica's network."""

    def __init__(self, module: nn.Module, weights: dict[str, Tensor]) -> None:
        self.module, self.weights = module, weights

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.module, self.weights, args, kwargs)


def without_dropout(network: Network) -> contextlib.AbstractContextManager[None]:
    """The network's module (under a DDP wrapper or bound to other weights) in eval mode inside the block."""
    module = getattr(network, "module", network)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{network!r} is not a module, a DDP wrapper or a Bound one")
    return evaluating(module)


@batchable
@dataclass
class DiscriminatorStepDraws:
    """The random draws of one discriminator step."""

    real: Tensor  # ids [B, T]
    real_labels: Tensor | None  # [B], else None
    dropout: Tensor | None  # the dropout mask of the real and fake batch together; None: drawn by the model


@batchable
@dataclass
class FakeBatch:
    """A batch of fake samples for one discriminator step, as the discriminator sees them."""

    samples: Tensor  # (relaxed) one-hots [B, T, V] or ids [B, T]
    labels: Tensor | None  # the classes they were asked for [B], else None


def discriminator_step_draws(draws: Draws, size: int) -> DiscriminatorStepDraws:
    real, real_labels = draws.real_batch(size)
    return DiscriminatorStepDraws(real, real_labels, draws.dropout_mask(2 * size))


def discriminator_loss(
    discriminator: Network,
    fake: FakeBatch,
    step: DiscriminatorStepDraws,
    config: AdversarialConfig,
    penalised: Network | None = None,
) -> Tensor:
    """The discriminator's loss on a real batch and a fake one, plus the loss's penalty if it has one (WGAN-GP's
    gradient penalty), computed through ``penalised`` (the same discriminator without a DDP wrapper, which a
    double backward needs; default ``discriminator``)."""
    d_real, d_fake = discriminator(
        step.real, fake.samples, dropout_mask=step.dropout, labels=per_batch(step.real_labels, fake.labels)
    )
    d_loss = gan_losses(config.loss, d_real, d_fake)[0]
    extra = penalty(config.loss)
    if extra is not None:
        d_loss = d_loss + extra(penalised or discriminator, step.real, fake.samples, config.gp_weight, step.real_labels)
    return d_loss


def per_batch(*labels: Tensor | None) -> tuple[Tensor, ...] | None:
    """The discriminator's ``labels`` argument: one class-id tensor per batch, or None (unconditional)."""
    given = tuple(batch for batch in labels if batch is not None)
    return given or None


class IterationSteps(Protocol):
    """How one kind of run turns an algorithm's losses into updates (a module and its optimiser, or each replica's
    slice of batched gradients)."""

    def generator_update(self, step: Any, scheduled_beta: Tensor) -> tuple[Tensor, Tensor]:
        """One generator update on the draws ``step``: (the logged g_loss, gradient norm before clipping)."""
        ...

    def beta(self, scheduled_beta: Tensor) -> Tensor:
        """The beta in effect now: the schedule's, or the learned one (no gradient)."""
        ...

    def fake_batches(self, beta: Tensor, samples: Any, count: int) -> list[FakeBatch]:
        """``count`` batches of fresh fake samples for the discriminator steps."""
        ...

    def discriminator_update(
        self, fake: FakeBatch, step: DiscriminatorStepDraws, learn: bool = True
    ) -> tuple[Tensor, Tensor]:
        """One discriminator update: (loss, gradient norm before clipping); with ``learn`` False (a control run)
        the loss alone, the discriminator unchanged, and a norm of 0."""
        ...


class IterationDraws(Protocol):
    """What the iteration asks of an algorithm (relgan.algorithms.Algorithm, which builds on this module)."""

    @property
    def relaxed(self) -> bool:
        """Whether the iteration reports beta."""
        ...

    def generator_step_draws(self, draws: Draws, size: int) -> Any: ...

    def sample_draws(self, draws: Draws, count: int) -> Any: ...


def adversarial_iteration(
    steps: IterationSteps, algorithm: IterationDraws, draws: Draws, config: AdversarialConfig, scheduled_beta: Tensor
) -> tuple[Tensor, ...]:
    """g_steps generator updates, then d_steps discriminator updates. Each generator step reads beta anew (a
    learned beta changes with every G step). Returns the last (g_loss, d_loss, g_grad_norm, d_grad_norm), and
    for a relaxed algorithm the beta of the D steps."""
    size = config.batch_size
    for _ in range(config.g_steps):
        g_loss, g_norm = steps.generator_update(algorithm.generator_step_draws(draws, size), scheduled_beta)
    beta = steps.beta(scheduled_beta)
    learn = config.control == "none"  # a control run's discriminator stays as it was initialised
    for fake in steps.fake_batches(beta, algorithm.sample_draws(draws, size * config.d_steps), config.d_steps):
        d_loss, d_norm = steps.discriminator_update(fake, discriminator_step_draws(draws, size), learn)
    return (g_loss, d_loss, g_norm, d_norm, beta) if algorithm.relaxed else (g_loss, d_loss, g_norm, d_norm)


def iteration_values(values: tuple[Tensor, ...]) -> dict[str, Tensor]:
    """The named values of one iteration's result (see :func:`adversarial_iteration`), as the book logs them."""
    return dict(zip(("g_loss", "d_loss", "g_grad_norm", "d_grad_norm", "beta"), values, strict=False))
