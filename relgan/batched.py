"""The replicas of ``run.seeds`` trained together (``run.replicas: batched``): each step of all K replicas is
one batched pass, ``torch.func.vmap`` over ``functional_call`` of the reference models in relgan/models.

Replica k computes what a separate run with ``run.seed = s_k`` and ``run.backend = reference`` computes, up to
the rounding of batched products: it keeps its own :class:`Trainer` (modules, Adam states, gradient clipping,
data loader, run directory and book); only the forward and backward passes are shared. The weights of the K
modules are views into one stacked tensor [K, ...] per parameter, so the batched pass reads them and each
replica's optimiser updates its own slice in place.

Randomness: the vmapped code may draw nothing (``randomness="error"``: a model edited to draw its own random
numbers stops with an error instead of diverging silently from the separate runs). Right after replica k's RNGs
are seeded for an adversarial iteration, :meth:`BatchedReplicas._draw` draws from them what the reference
iteration (training.Trainer) draws, in its order and shapes: real-batch choices, fake classes, Gumbel noise
(one [B, V] per time step), dropout masks. They are passed in as ``noise`` and ``dropout_mask``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from relgan.errors import ConfigError
from relgan.fast.cuda_graphs import StepGraph
from relgan.gumbel import gumbel_noise
from relgan.losses import gan_losses
from relgan.replica_books import ReplicaBooks
from relgan.training import Trainer

Draws = dict[str, Any]


class BatchedReplicas:
    """The steps of ``trainers`` (one per seed, all at the same step) as batched passes, for ``training.learn``."""

    def __init__(self, trainers: list[Trainer], seeds: list[int]) -> None:
        first = trainers[0]
        self.trainers, self.config, self.acc, self.horizon = trainers, first.config, first.acc, first.horizon
        self.mle_loader = tuple(trainer.mle_loader for trainer in trainers)
        self.mle_batches_per_epoch = first.mle_batches_per_epoch
        self.book = ReplicaBooks([trainer.book for trainer in trainers], seeds, self._draw)
        # the reference modules through which the stacked weights are called
        self.generator, self.discriminator = copy.deepcopy(first.gen), copy.deepcopy(first.disc)
        self.beta_module = copy.deepcopy(first.beta_module) if first.beta_module is not None else None
        self.weights = {"generator": _stack_weights([t.gen for t in trainers]),
                        "discriminator": _stack_weights([t.disc for t in trainers])}
        if self.beta_module is not None:
            self.weights["beta"] = _stack_weights([t.beta_module for t in trainers])
        self.draws: list[Draws] = [{} for _ in trainers]
        self.mle_step = StepGraph(self._mle_step, False, "batched MLE step")
        self.adversarial_iteration = StepGraph(self._adversarial_iteration, False, "batched adversarial iteration")

    @property
    def current_beta(self) -> Tensor | float:
        return self.trainers[0].current_beta

    @current_beta.setter
    def current_beta(self, beta: Tensor) -> None:
        for trainer, value in zip(self.trainers, beta):
            trainer.current_beta = value

    def finish(self) -> None:
        """Export every replica's generator and finish its trackers (the process group ends with the last)."""
        for k, trainer in enumerate(self.trainers):
            trainer.finish(keep_process_group=k + 1 < len(self.trainers))

    # ------------------------------------------------------------------------------------------ steps

    def _mle_step(self, *batches: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """One MLE batch of every replica ((ids [B, T],) or (ids, classes [B])) -> losses [K], norms [K]."""
        ids = torch.stack([batch[0] for batch in batches])
        conditional = {"labels": torch.stack([batch[1] for batch in batches])} if len(batches[0]) > 1 else {}
        grads, losses = _vmapped(grad_and_value(self._mle_loss))(
            self.weights["generator"], ids, conditional)
        norms = self._update({"generator": grads}, "mle_optimizer", self.config.mle.grad_clip)
        return losses.detach(), norms

    def _mle_loss(self, weights: dict[str, Tensor], ids: Tensor, conditional: dict[str, Tensor]) -> Tensor:
        return functional_call(self.generator, weights, (ids,), {"mode": "nll", **conditional}).mean()

    def _adversarial_iteration(self, scheduled_beta: Tensor) -> tuple[Tensor, ...]:
        """Trainer._adversarial_iteration of every replica, from the draws of :meth:`_draw`: the last
        (g_loss, d_loss, g_grad_norm, d_grad_norm) and the beta of the D steps, each [K]."""
        cfg = self.config.adversarial
        draws = _stack_replicas(self.draws)
        for step in draws["generator_steps"]:
            learned = {name: self.weights[name] for name in ("generator", "beta") if name in self.weights}
            grads, g_loss = _vmapped(grad_and_value(self._generator_loss), in_dims=(0, 0, None, 0))(
                learned, self.weights["discriminator"], scheduled_beta, step)
            g_norm = self._update(grads, "g_optimizer", cfg.grad_clip)
        beta = self._beta(scheduled_beta)
        with torch.no_grad():
            fake = _vmapped(self._samples)(self.weights["generator"], beta, draws["samples"])
        for fake_batch, step in zip(fake.split(cfg.batch_size, dim=1), draws["discriminator_steps"]):
            grads, d_loss = _vmapped(grad_and_value(self._discriminator_loss))(
                self.weights["discriminator"], fake_batch, step)
            d_norm = self._update({"discriminator": grads}, "d_optimizer", cfg.grad_clip)
        return g_loss.detach(), d_loss.detach(), g_norm, d_norm, beta

    def _generator_loss(self, learned: dict[str, dict[str, Tensor]], d_weights: dict[str, Tensor],
                        scheduled_beta: Tensor, step: Draws) -> Tensor:
        beta = functional_call(self.beta_module, learned["beta"], ()) if "beta" in learned else scheduled_beta
        _, fake = self._call_generator(learned["generator"], beta, step["generator"])
        (d_real,) = functional_call(self.discriminator, d_weights, (step["real"],), step["real_kwargs"])
        (d_fake,) = functional_call(self.discriminator, d_weights, (fake,), step["fake_kwargs"])
        return gan_losses(self.config.adversarial.loss, d_real, d_fake)[1]

    def _samples(self, weights: dict[str, Tensor], beta: Tensor, kwargs: dict[str, Tensor]) -> Tensor:
        return self._call_generator(weights, beta, kwargs)[1]

    def _call_generator(self, weights: dict[str, Tensor], beta: Tensor,
                        kwargs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(tokens [B, T], relaxed one-hots [B, T, V]) from the Gumbel noise (and classes) in ``kwargs``."""
        return functional_call(self.generator, weights, (), {
            "mode": "sample", "batch_size": kwargs["noise"].shape[0], "beta": beta,
            "hard": self.config.gumbel.straight_through, **kwargs})

    def _discriminator_loss(self, weights: dict[str, Tensor], fake: Tensor, step: Draws) -> Tensor:
        d_real, d_fake = functional_call(self.discriminator, weights, (step["real"], fake), step["kwargs"])
        return gan_losses(self.config.adversarial.loss, d_real, d_fake)[0]

    def _beta(self, scheduled: Tensor) -> Tensor:
        """The beta of every replica [K]: the schedule's, or each replica's learned one."""
        if self.beta_module is None:
            return scheduled.expand(len(self.trainers))
        with torch.no_grad():
            return vmap(lambda weights: functional_call(self.beta_module, weights, ()))(self.weights["beta"])

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

    # ------------------------------------------------------------------------------------- randomness

    def _draw(self, k: int) -> None:
        """Replica k's randomness of one adversarial iteration, drawn from its freshly seeded RNGs in the order
        and shapes of Trainer._adversarial_iteration (which draws it where it is used)."""
        trainer, cfg = self.trainers[k], self.config.adversarial
        size = cfg.batch_size
        generator_steps = []
        for _ in range(cfg.g_steps):
            real, real_labels = trainer._real_batch()
            fake_labels = trainer._fake_labels(size)
            generator = {"noise": self._noise(size), **_classes(fake_labels)}
            real_kwargs = {**self._dropout(size), **_classes((real_labels,))}
            fake_kwargs = {**self._dropout(size), **_classes((fake_labels,))}
            generator_steps.append({"real": real, "generator": generator, "real_kwargs": real_kwargs,
                                    "fake_kwargs": fake_kwargs})
        fake_labels = trainer._fake_labels(size * cfg.d_steps)
        samples = {"noise": self._noise(size * cfg.d_steps), **_classes(fake_labels)}
        discriminator_steps = []
        for j in range(cfg.d_steps):
            real, real_labels = trainer._real_batch()
            classes = _classes((real_labels, None if fake_labels is None else fake_labels[j * size:(j + 1) * size]))
            discriminator_steps.append({"real": real, "kwargs": {**self._dropout(2 * size), **classes}})
        self.draws[k] = {"generator_steps": generator_steps, "samples": samples,
                         "discriminator_steps": discriminator_steps}

    def _noise(self, batch_size: int) -> Tensor:
        """Gumbel noise [B, T, V] drawn as the reference sampler draws it: one [B, V] per time step."""
        shape = (batch_size, self.generator.vocab_size)
        return torch.stack([gumbel_noise(shape, self.acc.device) for _ in range(self.generator.seq_len)], dim=1)

    def _dropout(self, sentences: int) -> dict[str, Tensor]:
        """The ``dropout_mask`` argument of a training-mode discriminator call on ``sentences`` sentences."""
        disc = self.discriminator
        if not (disc.training and disc.config.dropout > 0):
            return {}
        width = disc.highway_gate.in_features
        return {"dropout_mask": disc.dropout_mask((sentences * disc.num_representations, width), self.acc.device)}


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
                "must use its own stream (BatchedReplicas._draw in relgan/batched.py draws the Gumbel noise and "
                "dropout masks and passes them in); draw yours there too, or use run.replicas=sequential"
            ) from None

    return call


def _classes(labels: Tensor | tuple[Tensor | None, ...] | None) -> dict[str, Any]:
    """The ``labels`` argument of a conditional call ({} for unconditional models, whose labels are None)."""
    first = labels[0] if isinstance(labels, tuple) else labels
    return {} if first is None else {"labels": labels}


def _replica_module(trainer: Trainer, name: str) -> nn.Module:
    return {"generator": trainer.gen, "discriminator": trainer.disc, "beta": trainer.beta_module}[name]


def _stack_weights(modules: list[nn.Module]) -> dict[str, Tensor]:
    """One tensor [K, ...] per parameter of the K ``modules``, whose parameters become views of it."""
    stacked = {}
    for name, _ in modules[0].named_parameters():
        params = [module.get_parameter(name) for module in modules]
        stacked[name] = torch.stack([param.detach() for param in params])
        for param, view in zip(params, stacked[name]):
            param.data = view
    return stacked


def _stack_replicas(trees: list[Any]) -> Any:
    """The replicas' draws (alike nests of dicts, lists and tuples of tensors) as one nest of [K, ...] tensors."""
    first = trees[0]
    if isinstance(first, Tensor):
        return torch.stack(trees)
    if isinstance(first, dict):
        return {key: _stack_replicas([tree[key] for tree in trees]) for key in first}
    return type(first)(_stack_replicas(list(items)) for items in zip(*trees))
