"""Seeded sampling of token ids from a generator, in batches."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from relgan.decoding import PLAIN, Decoding
from relgan.models import SequenceGenerator


def class_arguments(label: int | None, rows: int, device: torch.device | str) -> dict[str, Any]:
    """The ``labels`` argument of a conditional generator's call for ``rows`` sentences of class ``label``; none
    for an unconditional call (``label`` None), whose signature stays as it was."""
    return {} if label is None else {"labels": torch.full((rows,), label, dtype=torch.long, device=device)}


def sample_ids(
    generator: SequenceGenerator,
    num: int,
    batch_size: int,
    seed: int,
    decoding: Decoding = PLAIN,
    label: int | None = None,
) -> Tensor:
    """``num`` samples [num, T] (int64, CPU) drawn by the rule ``decoding`` with a private RNG seeded by ``seed``
    (of class ``label`` from a conditional generator).

    The global RNG is untouched, so sampling during training does not change the training run. The same
    seed, batch size and weights give the same samples.
    """
    device = generator.device
    rng = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    for start in range(0, num, batch_size):
        rows = min(batch_size, num - start)
        tokens = generator.sample_tokens(rows, decoding=decoding, generator=rng, **class_arguments(label, rows, device))
        chunks.append(tokens.cpu())
    return torch.cat(chunks)
