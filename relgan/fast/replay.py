"""Autograd nodes for forwards that already ran without gradients.

Sampling must run step by step (each step reads the last step's token), but the tokens carry no gradient, so
the backward of all steps can run at once. The sampler computes the steps under ``no_grad`` and then attaches
their backward with :func:`replayed`: the same values and gradients as the step-by-step graph, with the
backward's products over all T*B rows instead of T products of B rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def replayed(output: Tensor, backward: Callable[[Tensor], Sequence[Tensor | None]], *inputs: Tensor) -> Tensor:
    """``output`` (computed from ``inputs`` without gradients) as a differentiable function of ``inputs``.

    ``backward(grad of output)`` returns the gradients of ``inputs`` in order; it must not hold ``inputs``'s
    graph (capture detached tensors) so that no reference cycle keeps it alive.
    """
    return _Replayed.apply(backward, output, *inputs)


class _Replayed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backward: Callable[[Tensor], Sequence[Tensor | None]], output: Tensor, *inputs: Tensor) -> Tensor:
        ctx.backward_of_inputs = backward
        return output.detach()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return None, None, *ctx.backward_of_inputs(grad)
