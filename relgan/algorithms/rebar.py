"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, NeurIPS 2017, "REBAR: Low-variance, unbiased gradient
estimates for discrete latent variable models"): REINFORCE with the Gumbel-Softmax relaxation as a control
variate, whose scale eta and temperature lambda are tuned online to lower the estimator's variance. Unbiased.

For one categorical b = H(z), z = o + g (g Gumbel), and a control variate c, REBAR's estimator of grad E[f(b)] is

    [f(b) - c(z~)] grad log p(b) + grad c(z) - grad c(z~),   c(z) = eta f(softmax(z / lambda))

with z~ drawn from p(z | b) by a reparameterisation that is differentiable in the logits
(:func:`relgan.gumbel.conditional_perturbation`), and z from p(z) with b = H(z): the conditional draw given the
sampled token, so that the pair has the joint law of (H(z), z).

Tokens are fed back, so the logits of step t jump when an earlier token changes, and a pathwise gradient through a
whole relaxed sentence would be biased. The estimator is applied per step, conditioned on the prefix, as RELAX
does for sequential decisions (Grathwohl et al. 2018, Section 3.3, per-step control variates c(s_t, z_t)):

    g_t = [f(b) - c_t(z~_t)] grad_o_t log p(b_t | b_<t) + grad_o_t c_t(z_t) - grad_o_t c_t(z~_t)

where c_t may read the prefix b_<t but nothing drawn after it. Here c_t(z_t) is eta_t times the discriminator's
P(real) of the partial sentence one_hot(b_<t), softmax(z_t / lambda), then zeros: the prefix with the relaxed
token at t and nothing after (what follows depends on b_t, so it cannot enter). Each term has mean zero given the
prefix for any eta and lambda, so the estimate stays unbiased while they learn. g_t is the gradient with respect to
the logits o_t, carried to the generator's weights by the chain rule, as the RELAX authors did for their VAEs
("one gradient estimator on each activation").

eta [T] (one per step: how well a prefix's score predicts the sentence's depends on t) starts at 0, where REBAR is
plain REINFORCE, and lambda at ``temperature``. Both are trained at ``control_lr`` on the mean over sentences of
sum_t ||g_t||^2: the estimate's mean does not depend on them, so this is the gradient of its variance (REBAR's
Section 3.2, RELAX's Section 3.1). The reward f is the sentence's P(real), as SeqGAN's (``loss=standard``), with
``baseline: mean`` minus the leave-one-out mean of the batch's other sentences' (the default, ``none``, is the
paper's estimator). Use the baseline: a reward in (0, 1) with none mostly raises whatever was sampled, and REBAR's
eta, starting at 0, cannot take a baseline's place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from relgan.adversarial import Network, without_dropout
from relgan.algorithms.base import LearnedParts, Score
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
from relgan.gumbel import conditional_gumbel, conditional_perturbation


@dataclass
class RebarOptions:
    temperature: float = setting(0.5, "lambda at the start, of the control variate's softmax(z / lambda)", gt=0.0)
    control_lr: float = setting(1e-2, "Adam learning rate of the control variate's parameters (eta, lambda)", gt=0.0)
    baseline: str = baseline_setting("none", "the paper")


class RebarControl(nn.Module):
    """c_t(z_t) = eta_t P(real | one_hot(b_<t), softmax(z_t / lambda), zeros) for every sentence and step."""

    def __init__(self, seq_len: int, temperature: float) -> None:
        super().__init__()
        self.eta = nn.Parameter(torch.zeros(seq_len))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def forward(self, perturbed: Tensor, tokens: Tensor, probs: Tensor, labels: Tensor | None, score: Score) -> Tensor:
        """c [N, T] of perturbed logits z [N, T, V] given the tokens [N, T] they drew, the generator's
        distributions probs [N, T, V] (no gradient: the state each step was drawn in) and classes [N] or None."""
        return self.eta * prefix_scores(tokens, self.relax(perturbed), labels, score)

    def relax(self, perturbed: Tensor) -> Tensor:
        """softmax(z / lambda) [..., V] of perturbed logits z [..., V]."""
        return torch.softmax(perturbed / self.log_temperature.exp(), dim=-1)


def prefix_scores(tokens: Tensor, relaxed: Tensor, labels: Tensor | None, score: Score) -> Tensor:
    """P(real) [N, T] of the partial sentences one_hot(tokens_<t), relaxed_t, zeros, for every t; tokens [N, T],
    relaxed [N, T, V]."""
    size, length, vocab = relaxed.shape
    one_hot = torch.zeros_like(relaxed).scatter(-1, tokens.unsqueeze(-1), 1.0)
    steps = torch.arange(length, device=tokens.device)
    before = (steps.unsqueeze(1) > steps.unsqueeze(0)).to(relaxed.dtype)  # [t, position]: position < t
    at = torch.eye(length, device=tokens.device, dtype=relaxed.dtype)
    partial = before[:, None, :, None] * one_hot + at[:, None, :, None] * relaxed  # [T, N, T, V]
    repeated = None if labels is None else labels.repeat(length)
    return torch.sigmoid(score(partial.reshape(length * size, length, vocab), repeated)).view(length, size).t()


class Rebar(PolicyGradient):
    name = "rebar"
    label = "REBAR"
    summary = "REINFORCE with a per-step Gumbel-Softmax control variate whose scale and temperature learn"
    Options = RebarOptions
    batched = False  # its control variate learns: batched replicas would need its weights stacked too
    options: RebarOptions
    small: ClassVar[Mapping[str, Any]] = {"baseline": "mean"}

    @classmethod
    def lab_estimators(cls) -> dict[str, dict[str, Any]]:
        return {cls.name: {}, f"{cls.name}, baseline": {"baseline": "mean"}}

    @classmethod
    def obstacle(cls, config: Config) -> str | None:
        return baseline_obstacle(config)

    @classmethod
    def step_floats(cls, config: Config, seq_len: int, vocab_size: int) -> tuple[int, str]:
        # the partial sentences of z and z~ for every step, [2, T, B, T, V], and their gradients
        return 4 * seq_len * seq_len * config.adversarial.batch_size * vocab_size, "adversarial.batch_size"

    def learned_parts(self, vocab_size: int, seq_len: int) -> LearnedParts | None:
        return LearnedParts(self.control(vocab_size, seq_len), self.options.control_lr)

    def control(self, vocab_size: int, seq_len: int) -> nn.Module:
        """A new control variate c (forward as :class:`RebarControl`'s)."""
        return RebarControl(seq_len, self.options.temperature)

    def generator_step_draws(self, draws: Draws, size: int) -> PolicyStepDraws:
        labels = draws.fake_labels(size)
        return PolicyStepDraws(labels, draws.uniforms(size), None, draws.exponentials((2, size)))

    def surrogate(self, generator: Network, score: Score, step: PolicyStepDraws) -> tuple[Tensor, Tensor]:
        """(a loss whose gradient is minus the estimate for the generator's weights and the gradient of the
        estimate's squared norm for the control variate's, -mean_b P(real | x_b)) on B fresh sentences."""
        with without_dropout(generator):
            with torch.no_grad():
                tokens = complete(
                    generator, torch.zeros_like(step.uniforms, dtype=torch.long), 0, step.uniforms, step.labels
                )
                objective = torch.sigmoid(score(tokens, step.labels))  # [B]
                rewards = leave_one_out(objective) if self.options.baseline == "mean" else objective
            logits = generator(tokens, labels=step.labels).float()  # [B, T, V], the logits that drew the tokens
        with torch.enable_grad():  # the estimate is a gradient, also where the caller only reads the objective
            estimate = self.logit_gradients(logits.detach(), tokens, rewards, step, score)
        size = tokens.shape[0]
        loss = -(logits * estimate.detach()).sum() / size + estimate.square().sum() / size
        return loss, -objective.mean()

    def logit_gradients(
        self, logits: Tensor, tokens: Tensor, rewards: Tensor, step: PolicyStepDraws, score: Score
    ) -> Tensor:
        """g [B, T, V] (module docstring) for logits [B, T, V] and tokens [B, T], differentiable in the control
        variate's parameters; rewards f [B]."""
        control = self.learned
        if control is None or step.exponentials is None:
            raise RuntimeError(f"{self.name} needs its control variate attached (learned_parts) and its step draws")
        logits = logits.requires_grad_()
        probs = torch.softmax(logits, dim=-1)
        z = logits + conditional_gumbel(logits, tokens, step.exponentials[:1])[0]  # dz/do = I: z = o + g, g fixed
        z_tilde = conditional_perturbation(logits, tokens, step.exponentials[1:])[0]
        size = tokens.shape[0]
        labels = None if step.labels is None else step.labels.repeat(2)
        both = control(torch.cat([z, z_tilde]), tokens.repeat(2, 1), probs.detach().repeat(2, 1, 1), labels, score)
        c, c_tilde = both[:size], both[size:]  # [B, T] each
        # a control run's constant score leaves REBAR's c no path to the logits: then the pathwise terms are 0
        (pathwise,) = torch.autograd.grad(
            (c - c_tilde).sum(), logits, create_graph=True, allow_unused=True, materialize_grads=True
        )
        one_hot = torch.zeros_like(probs).scatter(-1, tokens.unsqueeze(-1), 1.0)
        score_function = (one_hot - probs).detach()  # grad_o log p(b_t | b_<t)
        return (rewards.unsqueeze(1) - c_tilde).unsqueeze(-1) * score_function + pathwise
