"""The REINFORCE family (SeqGAN, MaliGAN): the discriminator scores hard tokens, and the generator follows the
score-function gradient sum_t R_t grad log G(x_t | x_<t) of the rewards R [B, T] its algorithm computes.

Sentences are drawn by inversion (one uniform per row and step, drawn by the iteration), so a step draws nothing
inside the models: every algorithm here trains batched replicas too.

The policy is the generator without dropout (a GPT-2 generator has some; RMC and LSTM have none): its sentences,
their rollouts and the log-probabilities of the update all come from one deterministic network, so that the
score-function gradient is that of the distribution that drew the sentences (SeqGAN's and MaliGAN's generators
have no dropout), and it is the network that is evaluated and exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from relgan.adversarial import FakeBatch, Network, per_batch, without_dropout
from relgan.algorithms.base import Algorithm, Score, split_fakes
from relgan.config import Config, setting
from relgan.draws import Draws
from relgan.pytrees import batchable


@batchable
@dataclass
class PolicyStepDraws:
    """The random draws of one REINFORCE generator step on B sentences."""

    labels: Tensor | None  # the classes asked of the generator [B], else None
    uniforms: Tensor  # [B, T]: one per sampled token
    rollout_uniforms: Tensor | None  # [(T - 1) * N * B, T] for Monte-Carlo completions (SeqGAN), else None
    exponentials: Tensor | None = None  # [2, B, T, V]: REBAR's draws of z, then of z~, given the tokens, else None


@batchable
@dataclass
class PolicySampleDraws:
    labels: Tensor | None  # [N], else None
    uniforms: Tensor  # [N, T]


class PolicyGradient(Algorithm):
    """The family's step; a subclass defines :meth:`rewards`."""

    relaxed = False
    unbiased = True
    requires: ClassVar[Mapping[str, tuple[Any, str]]] = {
        "adversarial.loss": (
            "standard",
            "its rewards read the discriminator as a classifier, sigmoid(logit) = P(real), which the standard loss "
            "trains",
        )
    }

    def generator_step_draws(self, draws: Draws, size: int) -> PolicyStepDraws:
        labels = draws.fake_labels(size)
        return PolicyStepDraws(labels, draws.uniforms(size), self.rollout_draws(draws, size))

    def rollout_draws(self, draws: Draws, size: int) -> Tensor | None:
        """The uniforms of the Monte-Carlo completions of ``size`` sentences (None: the algorithm has none)."""
        return None

    def rewards(self, generator: Network, score: Score, tokens: Tensor, step: PolicyStepDraws) -> Tensor:
        """The reward R [B, T] of each sampled token of tokens [B, T] (no gradient)."""
        raise NotImplementedError

    def generator_loss(
        self, generator: Network, discriminator: Network, beta: Tensor, step: PolicyStepDraws
    ) -> tuple[Tensor, Tensor]:
        """The policy-gradient surrogate; logged: -mean D(x) of the sampled sentences, D = sigmoid(logit). A control
        run (``adversarial.control: removed``) rewards every sentence with 1/2 and never reads the discriminator."""

        def score(inputs: Tensor, labels: Tensor | None) -> Tensor:
            return sentence_logits(discriminator, inputs, labels)

        def chance(inputs: Tensor, labels: Tensor | None) -> Tensor:  # a control run: P(real) = 1/2 for every one
            return torch.zeros(inputs.shape[0], device=inputs.device)

        return self.surrogate(generator, chance if self.config.control == "removed" else score, step)

    def surrogate(self, generator: Network, score: Score, step: PolicyStepDraws) -> tuple[Tensor, Tensor]:
        """(-mean_b sum_t R_bt log G(x_bt | x_b,<t), -mean_b sigmoid(score(x_b))) on B fresh sentences."""
        with without_dropout(generator):
            with torch.no_grad():
                tokens = complete(
                    generator, torch.zeros_like(step.uniforms, dtype=torch.long), 0, step.uniforms, step.labels
                )
                rewards = self.rewards(generator, score, tokens, step)
                objective = -torch.sigmoid(score(tokens, step.labels)).mean()
            log_probs = -generator(tokens, mode="nll", labels=step.labels)  # [B, T]
        return -(rewards * log_probs).sum(dim=1).mean(), objective

    def gradient_estimate(self, generator: Network, score: Score, beta: Tensor, step: PolicyStepDraws) -> Tensor:
        return self.surrogate(generator, score, step)[0]

    def sample_draws(self, draws: Draws, count: int) -> PolicySampleDraws:
        labels = draws.fake_labels(count)
        return PolicySampleDraws(labels, draws.uniforms(count))

    def fake_samples(
        self, generator: Network, beta: Tensor, samples: PolicySampleDraws, count: int, size: int
    ) -> list[FakeBatch]:
        with without_dropout(generator):
            tokens = complete(
                generator, torch.zeros_like(samples.uniforms, dtype=torch.long), 0, samples.uniforms, samples.labels
            )
        return split_fakes(tokens, samples.labels, count, size)


def baseline_setting(default: str, paper: str) -> Any:
    """The ``baseline`` option of an algorithm of the family (``paper``: what its paper does)."""
    return setting(
        default,
        f"subtracted from the rewards: none ({paper}) or mean = the mean reward of the batch's other sentences at "
        "the same position",
        choices=("none", "mean"),
    )


def baseline_obstacle(config: Config) -> str | None:
    """Why ``baseline: mean`` cannot train ``config`` (None if it can)."""
    if config.adversarial.options.baseline == "mean" and config.adversarial.batch_size < 2:
        return (
            "baseline=mean subtracts the mean reward of the batch's other sentences, and "
            f"adversarial.batch_size = {config.adversarial.batch_size} has none: use a batch of 2 or more"
        )
    return None


def leave_one_out(rewards: Tensor) -> Tensor:
    """rewards [B, ...] minus the mean of the batch's other sentences' rewards: a baseline independent of each
    sentence's own draw, so the gradient stays unbiased."""
    return rewards - (rewards.sum(dim=0, keepdim=True) - rewards) / (rewards.shape[0] - 1)


def complete(
    generator: Network, prefixes: Tensor, lengths: Tensor | int, uniforms: Tensor, labels: Tensor | None
) -> Tensor:
    """Sentences [R, T] that keep prefixes [R, T] before lengths ([R], or one for all) and are sampled after."""
    if isinstance(lengths, int):
        lengths = torch.full_like(prefixes[:, 0], lengths)
    return generator(prefixes, mode="rollout", lengths=lengths, uniforms=uniforms, labels=labels)


def sentence_logits(discriminator: Network, inputs: Tensor, labels: Tensor | None) -> Tensor:
    """The discriminator's logit of each sentence [B] (ids [B, T] or one-hots [B, T, V]): the mean over its S
    representations, without dropout (the reward of the SeqGAN code)."""
    with without_dropout(discriminator):
        (logits,) = discriminator(inputs, labels=per_batch(labels))
    return logits.view(inputs.shape[0], -1).mean(dim=1)
