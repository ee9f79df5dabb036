"""The bookkeeping of K replicas trained in lockstep (``run.replicas: batched``): one :class:`RunBook` per
replica, each with its own run directory, counters, logs, evaluations and checkpoints, driven by the one
learning loop (``training.learn``) as if they were one book.

Every call reaches every replica, so that all stay at the same step: a stop signal makes each replica write its
checkpoint before the run leaves, and a non-finite loss names the replica (seed and run directory) it came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor

from relgan.bookkeeping import Progress, RunBook
from relgan.errors import NonFiniteLossError, TrainingInterrupted


class ReplicaBooks:
    """The books of replicas with ``seeds``; ``seeded(k)`` is called right after replica k's RNGs are seeded for a
    step (the batched steps draw each replica's randomness from its own stream)."""

    def __init__(self, books: list[RunBook], seeds: list[int], seeded: Callable[[int], None]) -> None:
        self.books, self.seeds, self.seeded = books, seeds, seeded
        for book in books[1:]:  # one signal stops every replica
            book.stop = books[0].stop

    @property
    def progress(self) -> Progress:
        """The counters of replica 0; lockstep keeps every replica's equal."""
        return self.books[0].progress

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for book in self.books:
                stack.enter_context(book.running())
            yield

    @contextlib.contextmanager
    def phase(self, name: str, total: int, done: int, unit: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for seed, book in zip(self.seeds, self.books, strict=True):
                stack.enter_context(book.phase(f"{name} seed {seed}", total, done, unit))
            yield

    def epoch_batches(self, loaders: tuple) -> Iterator[tuple[tuple[Tensor, ...], ...]]:
        """Per MLE step, one batch of every replica (each from its own loader and data order)."""
        batches = (book.epoch_batches(loader) for book, loader in zip(self.books, loaders, strict=True))
        yield from zip(*batches, strict=True)

    def seed(self, phase: str, step: int) -> None:
        for k, book in enumerate(self.books):
            book.seed(phase, step)
            self.seeded(k)

    def step_done(self, phase: str, **values: Tensor) -> None:
        """``values``: one tensor [K] per name, entry k replica k's."""
        self._each(lambda k, book: book.step_done(phase, **{name: v[k] for name, v in values.items()}))

    def epoch_done(self) -> None:
        self._each(lambda k, book: book.epoch_done())

    def iteration_done(self) -> None:
        self._each(lambda k, book: book.iteration_done())

    def _each(self, action: Callable[[int, RunBook], Any]) -> None:
        """``action`` on every book. A stop signal leaves after the last one (every replica has written its
        checkpoint); a non-finite loss leaves at once, naming its replica."""
        interrupted = None
        for k, (seed, book) in enumerate(zip(self.seeds, self.books, strict=True)):
            try:
                action(k, book)
            except TrainingInterrupted as exc:
                interrupted = interrupted or exc
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(f"replica seed {seed} ({book.run_dir}): {exc}") from None
        if interrupted is not None:
            for book in self.books:  # a signal between two replicas' checks reached only the later ones
                book.save_checkpoint()
            raise interrupted
