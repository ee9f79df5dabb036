"""Per-token cross-entropy on logits whose last dimension is padded (the generator's output layer).

On CPU in float32 the C++ kernel ``csrc/cross_entropy.cpp`` (see ``relgan.native``) reads the first V columns
of the padded logits in place and writes the padded gradient directly; elsewhere ``F.cross_entropy`` runs on
the slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from relgan import native


def padded_cross_entropy(logits: Tensor, targets: Tensor, vocab_size: int) -> Tensor:
    """-log softmax(logits[:, :vocab_size])[targets]: logits [N, V'] with V' >= vocab_size, targets [N] ->
    [N] in float32."""
    if logits.stride(-1) == 1 and native.kernels_for(logits.device, logits.dtype):
        with torch.autocast("cpu", enabled=False):
            return _PaddedCrossEntropy.apply(logits, targets, vocab_size)
    return F.cross_entropy(logits[:, :vocab_size].float(), targets, reduction="none")


class _PaddedCrossEntropy(torch.autograd.Function):
    """The kernel keeps each row's log-sum-exp; the backward rebuilds the soft-max from it."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, vocab_size: int) -> Tensor:
        nll, logsumexp = torch.ops.relgan_cross_entropy.forward(logits, targets, vocab_size)
        ctx.save_for_backward(logits, logsumexp, targets)
        ctx.vocab_size = vocab_size
        return nll

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        logits, logsumexp, targets = ctx.saved_tensors
        return torch.ops.relgan_cross_entropy.backward(grad, logits, logsumexp, targets, ctx.vocab_size), None, None
