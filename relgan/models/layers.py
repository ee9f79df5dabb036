"""Initialisers and layers shared by the networks, matching the official TensorFlow code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def truncated_normal_(tensor: Tensor, std: float) -> Tensor:
    """TF's truncated normal: N(0, std^2) redrawn outside two standard deviations."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def class_vectors(table: Tensor | None, labels: Tensor | None, module: str) -> Tensor | None:
    """The rows [B, E] of a conditional ``module``'s class table [C, E] for the class ids ``labels`` [B]; None for
    an unconditional module called without labels. A conditional module needs labels; an unconditional one
    (``table`` None) takes none."""
    if table is None:
        if labels is not None:
            raise ValueError(f"labels given to an unconditional {module}")
        return None
    if labels is None:
        raise ValueError(f"this {module} is conditioned on {table.shape[0]} classes: pass labels [B]")
    return table[labels]


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
