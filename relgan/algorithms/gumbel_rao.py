"""Gumbel-Rao (Paulus, Maddison & Krause, ICLR 2021, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator"): straight-through's forward pass (the discriminator sees one_hot(x)), and a backward pass
that averages the relaxation's gradient over K Gumbel draws conditioned on the sampled tokens. Its expectation is
straight-through's; its variance is no larger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from relgan.algorithms.relgan import RelaxedStepDraws
from relgan.algorithms.straight_through import TeacherForced
from relgan.config import Config, setting
from relgan.draws import Draws
from relgan.gumbel import gumbel_rao


@dataclass
class GumbelRaoOptions:
    rao_samples: int = setting(10, "K: conditional Gumbel draws averaged per token", min=1)


class GumbelRao(TeacherForced):
    name = "gumbel-rao"
    label = "Gumbel-Rao"
    summary = "straight-through with the backward averaged over rao_samples Gumbel draws conditioned on the tokens"
    Options = GumbelRaoOptions
    small: ClassVar[Mapping[str, Any]] = {"rao_samples": 4}
    options: GumbelRaoOptions

    @classmethod
    def lab_estimators(cls) -> dict[str, dict[str, Any]]:
        return {f"{cls.name} K={k}": {"rao_samples": k} for k in (1, 10, 100)}

    @classmethod
    def step_floats(cls, config: Config, seq_len: int, vocab_size: int) -> tuple[int, str]:
        # K exponentials, the conditional noise and its softmax, each [K, B, T, V]
        size = config.adversarial.options.rao_samples * config.adversarial.batch_size * seq_len * vocab_size
        return 3 * size, "adversarial.rao_samples"

    def estimator_draws(self, draws: Draws, size: int) -> Tensor:
        return draws.exponentials((self.options.rao_samples, size))

    def estimate(self, logits: Tensor, tokens: Tensor, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        if step.exponentials is None:
            raise ValueError("gumbel-rao's step draws carry its exponentials (GumbelRao.generator_step_draws)")
        return gumbel_rao(logits, tokens, beta, step.exponentials)
