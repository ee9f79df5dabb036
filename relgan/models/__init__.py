"""The reference networks in plain PyTorch: the generator (relational memory or LSTM core) and the
multi-representation discriminator. Nothing here depends on the fast backends (``relgan.fast``)."""

from relgan.models.discriminator import Discriminator
from relgan.models.generator import Generator

__all__ = ["Discriminator", "Generator", "count_parameters"]


def count_parameters(module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
