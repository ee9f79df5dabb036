"""How the generator gets its gradient: one module per algorithm, chosen by ``adversarial.algorithm``
(docs/algorithms.md). Every module of this package is imported here, and each :class:`Algorithm` subclass that
sets its ``name`` registers itself: a new algorithm is a new module, and nothing else names it."""

from __future__ import annotations

import importlib
import pkgutil

from relgan.algorithms.base import REGISTERED, Algorithm
from relgan.config import Config

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Algorithm", "algorithm_class", "build_algorithm", "registered"]


def registered() -> dict[str, type[Algorithm]]:
    """Every algorithm, by name."""
    return dict(REGISTERED)


def algorithm_class(name: str) -> type[Algorithm]:
    return REGISTERED[name]


def build_algorithm(config: Config) -> Algorithm:
    return algorithm_class(config.adversarial.algorithm)(config)
