"""The replicas of ``run.seeds`` trained together (``run.replicas: batched``): each step of all K replicas is
one batched pass, ``torch.func.vmap`` over ``functional_call`` of the reference models in relgan/models.

Replica k computes what a separate run with ``run.seed = s_k`` and ``run.backend = reference`` computes, up to
the rounding of batched products: it keeps its own :class:`Trainer` (modules, Adam states, gradient clipping,
data loader, run directory and book); only the forward and backward passes are shared. The weights of the K
modules are views into one stacked tensor [K, ...] per parameter, so the batched pass reads them and each
replica's optimiser updates its own slice in place.

The adversarial iteration is the one of adversarial.py, which a single run runs too; this class supplies its
steps batched. Randomness: the vmapped code may draw nothing (``randomness="error"``: a model edited to draw its
own random numbers stops with an error instead of diverging silently from the separate runs). Every draw the
iteration asks for is made outside the vmapped code, from each replica's own RNG stream, in the order
adversarial.py writes down (draws.ReplicaDraws), and passed in: real batches, classes, Gumbel noise and dropout
masks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from relgan.adversarial import (
    Bound,
    DiscriminatorStepDraws,
    FakeBatch,
    adversarial_iteration,
    discriminator_loss,
)
from relgan.draws import ReplicaDraws, RunDraws
from relgan.errors import ConfigError
from relgan.fast.cuda_graphs import StepGraph
from relgan.replica_books import ReplicaBooks
from relgan.training import Trainer


class BatchedReplicas:
    """The steps of ``trainers`` (one per seed, all at the same step) as batched passes, for ``training.learn``."""

    def __init__(self, trainers: list[Trainer], seeds: list[int]) -> None:
        first = trainers[0]
        self.trainers, self.config, self.acc, self.horizon = trainers, first.config, first.acc, first.horizon
        self.algorithm = first.algorithm
        self.mle_loader = tuple(trainer.mle_loader for trainer in trainers)
        self.mle_batches_per_epoch = first.mle_batches_per_epoch
        self.draws = ReplicaDraws(
            [
                RunDraws(t.draws.train_ids, t.draws.train_labels, t.disc, t.corpus.vocab_size, materialise=True)
                for t in trainers
            ]
        )
        self.book = ReplicaBooks([trainer.book for trainer in trainers], seeds, self.draws.seeded)
        # the reference modules through which the stacked weights are called
        self.generator, self.discriminator = copy.deepcopy(first.gen), copy.deepcopy(first.disc)
        self.beta_module = copy.deepcopy(first.beta_module) if first.beta_module is not None else None
        self.weights = {
            "generator": _stack_weights([t.gen for t in trainers]),
            "discriminator": _stack_weights([t.disc for t in trainers]),
        }
        betas = [t.beta_module for t in trainers if t.beta_module is not None]
        if betas:
            self.weights["beta"] = _stack_weights(betas)
        self.mle_step = StepGraph(self._mle_step, False, "batched MLE step")
        self.adversarial_iteration = StepGraph(self._adversarial_iteration, False, "batched adversarial iteration")

    def finish(self) -> None:
        """Export every replica's generator and finish its trackers (the process group ends with the last)."""
        for k, trainer in enumerate(self.trainers):
            trainer.finish(keep_process_group=k + 1 < len(self.trainers))

    # ------------------------------------------------------------------------------------------ steps

    def _mle_step(self, *batches: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """One MLE batch of every replica ((ids [B, T],) or (ids, classes [B])) -> losses [K], norms [K]."""
        ids = torch.stack([batch[0] for batch in batches])
        conditional = {"labels": torch.stack([batch[1] for batch in batches])} if len(batches[0]) > 1 else {}
        grads, losses = _vmapped(grad_and_value(self._mle_loss))(self.weights["generator"], ids, conditional)
        norms = self._update({"generator": grads}, "mle_optimizer", self.config.mle.grad_clip)
        return losses.detach(), norms

    def _mle_loss(self, weights: dict[str, Tensor], ids: Tensor, conditional: dict[str, Tensor]) -> Tensor:
        return functional_call(self.generator, weights, (ids,), {"mode": "nll", **conditional}).mean()

    def _adversarial_iteration(self, scheduled_beta: Tensor) -> tuple[Tensor, ...]:
        """The iteration of every replica: its values (adversarial.adversarial_iteration), each [K]."""
        return adversarial_iteration(self, self.algorithm, self.draws, self.config.adversarial, scheduled_beta)

    # the steps of adversarial.IterationSteps, batched over the replicas (draws [K, ...])

    def generator_update(self, step: Any, scheduled_beta: Tensor) -> tuple[Tensor, Tensor]:
        learned = {name: self.weights[name] for name in ("generator", "beta") if name in self.weights}
        grads, (_, g_loss) = _vmapped(grad_and_value(self._generator_loss, has_aux=True), in_dims=(0, 0, None, 0))(
            learned, self.weights["discriminator"], scheduled_beta, step
        )
        return g_loss.detach(), self._update(grads, "g_optimizer", self.config.adversarial.grad_clip)

    def _generator_loss(
        self, learned: dict[str, dict[str, Tensor]], d_weights: dict[str, Tensor], scheduled_beta: Tensor, step: Any
    ) -> tuple[Tensor, Tensor]:
        beta = Bound(self.beta_module, learned["beta"])() if self.beta_module is not None else scheduled_beta
        return self.algorithm.generator_loss(
            Bound(self.generator, learned["generator"]), Bound(self.discriminator, d_weights), beta, step
        )

    def beta(self, scheduled_beta: Tensor) -> Tensor:
        """The beta of every replica [K]: the schedule's, or each replica's learned one."""
        module = self.beta_module
        if module is None:
            return scheduled_beta.expand(len(self.trainers))
        with torch.no_grad():
            return vmap(lambda weights: functional_call(module, weights, ()))(self.weights["beta"])

    def fake_batches(self, beta: Tensor, samples: Any, count: int) -> list[FakeBatch]:
        with torch.no_grad():
            return _vmapped(self._fake_samples, in_dims=(0, 0, 0, None))(
                self.weights["generator"], beta, samples, count
            )

    def _fake_samples(self, weights: dict[str, Tensor], beta: Tensor, samples: Any, count: int) -> list[FakeBatch]:
        return self.algorithm.fake_samples(
            Bound(self.generator, weights), beta, samples, count, self.config.adversarial.batch_size
        )

    def discriminator_update(
        self, fake: FakeBatch, step: DiscriminatorStepDraws, learn: bool = True
    ) -> tuple[Tensor, Tensor]:
        if not learn:
            d_loss = _vmapped(self._discriminator_loss)(self.weights["discriminator"], fake, step)
            return d_loss.detach(), torch.zeros_like(d_loss)
        grads, d_loss = _vmapped(grad_and_value(self._discriminator_loss))(self.weights["discriminator"], fake, step)
        return d_loss.detach(), self._update({"discriminator": grads}, "d_optimizer", self.config.adversarial.grad_clip)

    def _discriminator_loss(self, weights: dict[str, Tensor], fake: FakeBatch, step: DiscriminatorStepDraws) -> Tensor:
        return discriminator_loss(Bound(self.discriminator, weights), fake, step, self.config.adversarial)

    def _update(self, grads: dict[str, dict[str, Tensor]], optimizer: str, max_norm: float) -> Tensor:
        """Each replica's own clipping and optimiser step on its slice of the batched gradients ({module:
        {parameter: [K, ...]}}); the gradient norms [K] before clipping."""
        norms = []
        for k, trainer in enumerate(self.trainers):
            params = []
            for module_name, module_grads in grads.items():
                module = _replica_module(trainer, module_name)
                for name, grad in module_grads.items():
                    param = module.get_parameter(name)
                    param.grad = grad[k]
                    params.append(param)
            norms.append(trainer.acc.clip_grad_norm_(params, max_norm))
            getattr(trainer, optimizer).step()
            getattr(trainer, optimizer).zero_grad(set_to_none=True)
        return torch.stack(norms)


def _vmapped(function: Callable[..., Any], in_dims: Any = 0) -> Callable[..., Any]:
    """``function`` vmapped over the replicas; a random draw inside it is a one-line error."""
    batched = vmap(function, in_dims=in_dims, randomness="error")

    def call(*args: Any) -> Any:
        try:
            return batched(*args)
        except RuntimeError as exc:
            if "randomness" not in str(exc):
                raise
            raise ConfigError(
                "run.replicas=batched: the models draw random numbers inside a training step, where every replica "
                "must use its own stream (the iteration asks relgan/draws.py for the Gumbel noise and dropout masks "
                "and passes them in); draw yours there too, or use run.replicas=sequential"
            ) from None

    return call


def _replica_module(trainer: Trainer, name: str) -> nn.Module:
    return {"generator": trainer.gen, "discriminator": trainer.disc, "beta": trainer.beta_module}[name]


def _stack_weights(modules: list[nn.Module]) -> dict[str, Tensor]:
    """One tensor [K, ...] per parameter of the K ``modules``, whose parameters become views of it."""
    stacked = {}
    for name, _ in modules[0].named_parameters():
        params = [module.get_parameter(name) for module in modules]
        stacked[name] = torch.stack([param.detach() for param in params])
        for param, view in zip(params, stacked[name], strict=True):
            param.data = view
    return stacked
