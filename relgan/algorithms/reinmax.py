"""ReinMax (Liu, Zhao, Zhu, Gao & Chen, NeurIPS 2023, "Bridging Discrete and Backpropagation: Straight-Through and
Beyond"): straight-through's cost and forward pass (the discriminator sees one_hot(x)), with a second-order
backward. Straight-through's backward is a first-order (Euler) approximation of the gradient; ReinMax's is Heun's
method, exact for a quadratic objective (the paper's Section 4, Algorithm 2):

    pi_0 = softmax(o)                                   the distribution the token x was drawn from
    pi_1 = (one_hot(x) + softmax(beta o)) / 2           (the paper's softmax(theta / tau), tau = 1 / beta)
    pi_1 = softmax(o + stop_gradient(ln pi_1 - o))      its value, with the softmax Jacobian at pi_1
    pi_2 = 2 pi_1 - pi_0 / 2
    D    = pi_2 - stop_gradient(pi_2) + one_hot(x)

so the gradient with respect to the logits o is 2 J(pi_1)^T g - J(pi_0)^T g / 2, J(p) = diag(p) - p p^T, for the
discriminator's gradient g at one_hot(x). No Gumbel noise enters the backward pass. Checked against the authors'
code (``reinmax`` in mnist_vae/model/basic.py of LiyuanLucasLiu/ReinMax, whose custom backward is J(pi_1)^T g).
"""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.algorithms.relgan import RelaxedStepDraws
from relgan.algorithms.straight_through import TeacherForced


def reinmax(logits: Tensor, tokens: Tensor, beta: float | Tensor) -> Tensor:
    """The ReinMax estimator of the one-hots of tokens [...] drawn from softmax(logits [..., V]): the value of
    one_hot(tokens), the gradient 2 J(pi_1)^T g - J(pi_0)^T g / 2 (module docstring)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision computes in float32
    one_hot = torch.zeros_like(logits).scatter(-1, tokens.unsqueeze(-1), 1.0)
    pi_0 = torch.softmax(logits, dim=-1)
    pi_1 = (one_hot + torch.softmax(beta * logits.detach(), dim=-1)) / 2
    pi_1 = torch.softmax(logits + (pi_1.log() - logits).detach(), dim=-1)
    pi_2 = 2 * pi_1 - pi_0 / 2
    return pi_2 - pi_2.detach() + one_hot


class ReinMax(TeacherForced):
    name = "reinmax"
    label = "ReinMax"
    summary = "straight-through's forward pass with a second-order (Heun) backward: 2 J(pi_1) - J(pi_0) / 2"

    def estimate(self, logits: Tensor, tokens: Tensor, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        return reinmax(logits, tokens, beta)
