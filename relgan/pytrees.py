"""Dataclasses that ``torch.func.vmap`` batches like tuples of tensors (the batched replicas' draws [K, ...])."""

from __future__ import annotations

from typing import TypeVar

from torch.utils import _pytree

T = TypeVar("T", bound=type)


def batchable(cls: T) -> T:
    """Register the dataclass ``cls`` as a pytree: vmap maps over its tensor fields; a None field stays None."""
    _pytree.register_dataclass(cls)
    return cls
