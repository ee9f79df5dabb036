"""Gapped straight-through (Fan, Chen, Li & Zhang, ICML 2022, "Training Discrete Deep Generative Models via Gapped
Straight-Through Estimator"): straight-through's forward pass (the discriminator sees one_hot(x)), and a backward
pass through softmax(beta (o + m)) in which a deterministic perturbation m(o, x) takes the place of the Gumbel
noise. m is the smallest move of the logits that makes the sampled token the argmax with a gap kappa to every other
token (the paper's consistency and gap conditions, Section 3):

    (o + m)_x = max_j o_j                     the sampled token is lifted to the largest logit
    (o + m)_j = min(o_j, max_k o_k - kappa)   every other token lies at least kappa below it

m is computed from the logits without a gradient (the authors' ``gst_mover`` with detach=True, model/basic.py of
chijames/GST; their default gap is 1.0, "gst-1.0"). Its variance is that of the token draw alone: no noise enters
the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from relgan.algorithms.relgan import RelaxedStepDraws
from relgan.algorithms.straight_through import TeacherForced
from relgan.config import setting
from relgan.gumbel import straight_through


@dataclass
class GappedOptions:
    gap: float = setting(1.0, "kappa: how far below the sampled token every other logit is moved (gapped-st)", gt=0.0)


def gapped_perturbation(logits: Tensor, tokens: Tensor, gap: float) -> Tensor:
    """m [..., V] (no gradient) for logits [..., V] and the sampled tokens [...] (module docstring)."""
    logits = logits.detach()
    chosen = torch.zeros_like(logits).scatter(-1, tokens.unsqueeze(-1), 1.0).bool()
    top = logits.max(dim=-1, keepdim=True).values
    moved = torch.where(chosen, top, torch.minimum(logits, top - gap))
    return moved - logits


class GappedStraightThrough(TeacherForced):
    name = "gapped-st"
    label = "Gapped-ST"
    summary = "straight-through whose backward perturbs the logits by a deterministic gapped move, not Gumbel noise"
    Options = GappedOptions
    options: GappedOptions

    def estimate(self, logits: Tensor, tokens: Tensor, beta: Tensor, step: RelaxedStepDraws) -> Tensor:
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision computes in float32
        perturbed = logits + gapped_perturbation(logits, tokens, self.options.gap)
        return straight_through(tokens, torch.softmax(beta * perturbed, dim=-1))
