"""Initialisers and layers shared by the networks, matching the official TensorFlow code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def truncated_normal_(tensor: Tensor, std: float) -> Tensor:
    """TF's truncated normal: N(0, std^2) redrawn outside two standard deviations."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def check_labels(labels: Tensor | None, num_classes: int, module: str) -> None:
    """A conditional ``module`` (``num_classes`` > 0) needs class ids; an unconditional one takes none."""
    if labels is None and num_classes:
        raise ValueError(f"this {module} is conditioned on {num_classes} classes: pass labels [B]")
    if labels is not None and not num_classes:
        raise ValueError(f"labels given to an unconditional {module}")


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """The official ``linear()``: weight ~ truncated normal with std 1/sqrt(fan_in), zero bias."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    truncated_normal_(layer.weight, 1 / math.sqrt(in_features))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class JointLayerNorm(nn.Module):
    """``tf.contrib.layers.layer_norm`` on [B, R, F]: statistics over all R*F values of each batch element
    jointly, affine parameters per feature [F]. (``nn.LayerNorm(F)`` would normalise each row alone.)"""

    def __init__(self, features: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x [B, R, F] -> [B, R, F]."""
        normalised = F.layer_norm(x, x.shape[-2:], eps=self.eps)
        return normalised * self.weight + self.bias
