"""Where the random numbers of an adversarial iteration come from (their order is written in adversarial.py).

* :class:`RunDraws`: one run's draws from the process's RNGs, which the book reseeds before every step. A
  single run draws the real batches and classes here and leaves the Gumbel noise and dropout masks to the models
  (``materialise=False``: the fast kernels draw them their own way, in place); with ``materialise=True`` it draws
  those too, as the reference models would draw them.
* :class:`ReplicaDraws`: the draws of K replicas, each from its own RNG stream, stacked [K, ...] for a vmapped
  step (which may draw nothing itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor

from relgan.gumbel import gumbel_noise
from relgan.models import Discriminator

T = TypeVar("T")


class Draws(Protocol):
    """The random draws an adversarial iteration asks for."""

    def real_batch(self, size: int) -> tuple[Tensor, Tensor | None]:
        """ids [size, T] of a random real batch and their classes [size] (None for unconditional models)."""
        ...

    def fake_labels(self, count: int) -> Tensor | None:
        """``count`` classes [count] to ask of a conditional generator (None, drawing nothing, otherwise)."""
        ...

    def gumbel_noise(self, count: int) -> Tensor | None:
        """Gumbel noise [count, T, V] for ``count`` samples (None: the generator draws it)."""
        ...

    def dropout_mask(self, sentences: int) -> Tensor | None:
        """The discriminator's dropout mask for a call on ``sentences`` sentences (None: it draws its own, or
        has no dropout)."""
        ...

    def uniforms(self, rows: int) -> Tensor:
        """U[0, 1) [rows, T]: one per row and position (sampling by inversion)."""
        ...

    def exponentials(self, leading: tuple[int, ...]) -> Tensor:
        """Standard exponentials [*leading, T, V] (conditional Gumbel draws), all positive."""
        ...

    @property
    def seq_len(self) -> int:
        """T."""
        ...


class RunDraws:
    """The draws of one run: real batches from ``train_ids`` [N, T] (classes ``train_labels`` [N] or None)."""

    def __init__(
        self,
        train_ids: Tensor,
        train_labels: Tensor | None,
        discriminator: Discriminator,
        vocab_size: int,
        materialise: bool,
    ) -> None:
        self.train_ids, self.train_labels, self.discriminator = train_ids, train_labels, discriminator
        self.vocab_size, self.materialise = vocab_size, materialise

    def real_batch(self, size: int) -> tuple[Tensor, Tensor | None]:
        """A random one of the sequential batches (the official ``random_batch``)."""
        device = self.train_ids.device
        which = torch.randint(len(self.train_ids) // size, (1,), device=device)
        rows = which * size + torch.arange(size, device=device)
        return self.train_ids[rows], None if self.train_labels is None else self.train_labels[rows]

    def fake_labels(self, count: int) -> Tensor | None:
        """Classes drawn from the training split's class frequencies."""
        if self.train_labels is None:
            return None
        return self.train_labels[torch.randint(len(self.train_labels), (count,), device=self.train_labels.device)]

    def gumbel_noise(self, count: int) -> Tensor | None:
        """As the reference sampler draws it: one [count, V] per time step."""
        if not self.materialise:
            return None
        shape, device = (count, self.vocab_size), self.train_ids.device
        return torch.stack([gumbel_noise(shape, device) for _ in range(self.train_ids.shape[1])], dim=1)

    def dropout_mask(self, sentences: int) -> Tensor | None:
        """The mask [sentences * S, width] a training-mode discriminator draws in ``classify``."""
        disc = self.discriminator
        if not (self.materialise and disc.training and disc.config.dropout > 0):
            return None
        width = disc.highway_gate.in_features
        return disc.dropout_mask((sentences * disc.num_representations, width), self.train_ids.device)

    def uniforms(self, rows: int) -> Tensor:
        return torch.rand(rows, self.seq_len, device=self.train_ids.device)

    def exponentials(self, leading: tuple[int, ...]) -> Tensor:
        shape = (*leading, self.seq_len, self.vocab_size)
        drawn = torch.empty(shape, device=self.train_ids.device).exponential_()
        return drawn.clamp_(min=torch.finfo(torch.float32).tiny)  # exponential_ may return 0

    @property
    def seq_len(self) -> int:
        return self.train_ids.shape[1]


class ReplicaDraws:
    """The draws of K replicas, each from its own RNG stream, stacked [K, ...] (None stays None).

    :meth:`seeded` is called right after replica k's RNGs were reseeded for a step: it keeps their state, and
    every draw continues each replica's stream from where its last draw left it.
    """

    def __init__(self, replicas: list[RunDraws]) -> None:
        self.replicas = replicas
        self.states: list[tuple[Tensor, Tensor | None]] = [_rng_state(r.train_ids.device) for r in replicas]

    def seeded(self, k: int) -> None:
        self.states[k] = _rng_state(self.replicas[k].train_ids.device)

    def real_batch(self, size: int) -> tuple[Tensor, Tensor | None]:
        return self._each(lambda replica: replica.real_batch(size))

    def fake_labels(self, count: int) -> Tensor | None:
        return self._each(lambda replica: replica.fake_labels(count))

    def gumbel_noise(self, count: int) -> Tensor | None:
        return self._each(lambda replica: replica.gumbel_noise(count))

    def dropout_mask(self, sentences: int) -> Tensor | None:
        return self._each(lambda replica: replica.dropout_mask(sentences))

    def uniforms(self, rows: int) -> Tensor:
        return self._each(lambda replica: replica.uniforms(rows))

    def exponentials(self, leading: tuple[int, ...]) -> Tensor:
        return self._each(lambda replica: replica.exponentials(leading))

    @property
    def seq_len(self) -> int:
        return self.replicas[0].seq_len

    def _each(self, draw: Callable[[RunDraws], T]) -> T:
        """``draw`` of every replica, each from its own RNG stream, stacked."""
        values = []
        for k, replica in enumerate(self.replicas):
            device = replica.train_ids.device
            _set_rng_state(self.states[k], device)
            values.append(draw(replica))
            self.states[k] = _rng_state(device)
        return _stack(values)


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _stack(values: list[Any]) -> Any:
    """The replicas' values (alike nests of tuples of tensors and None) as one nest of [K, ...] tensors."""
    first = values[0]
    if first is None:
        return None
    if isinstance(first, Tensor):
        return torch.stack(values)
    return type(first)(_stack(list(items)) for items in zip(*values, strict=True))
