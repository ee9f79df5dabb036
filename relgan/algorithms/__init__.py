"""How the generator gets its gradient: one module per algorithm, chosen by ``adversarial.algorithm``
(docs/algorithms.md). A new one is a module with an :class:`Algorithm` subclass, its line below and its name in
``config.ALGORITHMS``."""

from __future__ import annotations

from relgan.algorithms.base import Algorithm
from relgan.algorithms.gumbel_rao import GumbelRao
from relgan.algorithms.maligan import MaliGAN
from relgan.algorithms.relgan import RelGAN
from relgan.algorithms.seqgan import SeqGAN
from relgan.algorithms.straight_through import StraightThrough
from relgan.config import Config

ALGORITHM_CLASSES: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (RelGAN, StraightThrough, GumbelRao, SeqGAN, MaliGAN)
}

__all__ = ["ALGORITHM_CLASSES", "Algorithm", "algorithm_class", "build_algorithm"]


def algorithm_class(name: str) -> type[Algorithm]:
    return ALGORITHM_CLASSES[name]


def build_algorithm(config: Config) -> Algorithm:
    return algorithm_class(config.adversarial.algorithm)(config)
