"""Seeded sampling of token ids from a generator, in batches."""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.models import SequenceGenerator


def sample_ids(generator: SequenceGenerator, num: int, batch_size: int, seed: int, temperature: float = 1.0) -> Tensor:
    """``num`` samples [num, T] (int64, CPU) drawn with a private RNG seeded by ``seed``.

    The global RNG is untouched, so sampling during training does not change the training run. The same
    seed, batch size and weights give the same samples.
    """
    device = generator.device
    rng = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    for start in range(0, num, batch_size):
        tokens = generator.sample_tokens(min(batch_size, num - start), temperature=temperature, generator=rng)
        chunks.append(tokens.cpu())
    return torch.cat(chunks)
