"""MaliGAN (Che, Li, Zhang, Hjelm, Li, Song & Bengio 2017, "Maximum-Likelihood Augmented Discrete Generative
Adversarial Networks"): every token of sentence x_b gets the sequence-level reward r_b / sum_j r_j - 1/B, with
r = D/(1-D) the discriminator's importance weight (exp of its logit), normalised over the batch, minus its mean."""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.adversarial import Network
from relgan.algorithms.base import Score
from relgan.algorithms.reinforce import PolicyGradient, PolicyStepDraws
from relgan.config import Config


class MaliGAN(PolicyGradient):
    name = "maligan"
    label = "MaliGAN"
    summary = "REINFORCE with each sentence's D/(1-D) weight normalised over the batch, minus its mean"
    unbiased = False  # its weights estimate the gradient of another objective

    @classmethod
    def obstacle(cls, config: Config) -> str | None:
        if config.adversarial.batch_size < 2:
            return "its weights are normalised over the batch, so a batch of one gets reward 0: use 2 or more"
        return None

    def rewards(self, generator: Network, score: Score, tokens: Tensor, step: PolicyStepDraws) -> Tensor:
        size = tokens.shape[0]
        weights = torch.softmax(score(tokens, step.labels), dim=0)  # exp(logit_b) / sum_j exp(logit_j)
        return (weights - 1 / size).unsqueeze(1).expand_as(tokens)
