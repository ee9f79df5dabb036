"""SeqGAN (Yu, Zhang, Wang & Yu, AAAI 2017): REINFORCE whose reward of token t is the discriminator's mean
P(real) over N Monte-Carlo completions of the prefix x_0..t by the current generator (the sentence's own score
for the last token); the paper's update sum_t Q_t grad log G(x_t | x_<t), optionally minus a baseline.

All (T - 1) * N * B completions of a batch are sampled in one batched pass (every row runs T steps, feeding its
prefix until it ends) and scored in T - 1 discriminator calls of N * B sentences. ``rollouts: 0`` gives every token
the sentence's score: plain REINFORCE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from relgan.adversarial import Network
from relgan.algorithms.base import Score
from relgan.algorithms.reinforce import (
    PolicyGradient,
    PolicyStepDraws,
    baseline_obstacle,
    baseline_setting,
    complete,
    leave_one_out,
)
from relgan.config import Config, setting
from relgan.draws import Draws


@dataclass
class SeqGANOptions:
    rollouts: int = setting(16, "N: Monte-Carlo completions per prefix (the paper's 16; 0 = plain REINFORCE)", min=0)
    baseline: str = baseline_setting("none", "the paper")


class SeqGAN(PolicyGradient):
    name = "seqgan"
    label = "SeqGAN"
    summary = "REINFORCE whose token rewards are D's mean over Monte-Carlo completions of each prefix"
    Options = SeqGANOptions
    small: ClassVar[Mapping[str, Any]] = {"rollouts": 2, "baseline": "mean"}
    options: SeqGANOptions

    @classmethod
    def lab_estimators(cls) -> dict[str, dict[str, Any]]:
        return {
            "reinforce": {"rollouts": 0},
            "reinforce, baseline": {"rollouts": 0, "baseline": "mean"},
            f"{cls.name} N=4": {"rollouts": 4},
            f"{cls.name} N=4, baseline": {"rollouts": 4, "baseline": "mean"},
        }

    @classmethod
    def obstacle(cls, config: Config) -> str | None:
        return baseline_obstacle(config)

    @classmethod
    def step_floats(cls, config: Config, seq_len: int, vocab_size: int) -> tuple[int, str]:
        # (T - 1) N B completions: their uniforms and tokens [R, T], and one step's logits [R, V]
        rows = (seq_len - 1) * config.adversarial.options.rollouts * config.adversarial.batch_size
        return rows * (2 * seq_len + vocab_size), "adversarial.rollouts"

    def rollout_draws(self, draws: Draws, size: int) -> Tensor | None:
        rows = (draws.seq_len - 1) * self.options.rollouts * size
        return draws.uniforms(rows) if rows else None

    def rewards(self, generator: Network, score: Score, tokens: Tensor, step: PolicyStepDraws) -> Tensor:
        size, length = tokens.shape
        final = torch.sigmoid(score(tokens, step.labels))  # [B]
        n = self.options.rollouts
        if step.rollout_uniforms is None:  # no rollouts
            q = final.unsqueeze(1).expand(size, length)
        else:
            copies = (length - 1) * n  # rows ordered (prefix length 1 .. T-1, rollout, sentence)
            lengths = torch.arange(1, length, device=tokens.device).repeat_interleave(n * size)
            labels = None if step.labels is None else step.labels.repeat(copies)
            completed = complete(generator, tokens.repeat(copies, 1), lengths, step.rollout_uniforms, labels)
            per_prefix = [
                torch.sigmoid(score(rows, None if labels is None else labels[: n * size]))
                for rows in completed.split(n * size)
            ]  # one discriminator call per prefix length
            q = torch.stack(per_prefix).view(length - 1, n, size).mean(dim=1).t()  # [B, T - 1]
            q = torch.cat([q, final.unsqueeze(1)], dim=1)
        return leave_one_out(q) if self.options.baseline == "mean" else q
