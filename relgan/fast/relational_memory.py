"""The relational memory through the C++ kernel (``csrc/relational_memory.cpp``): CPU, float32, no autocast.

:func:`unroll` replaces ``RelationalMemory.unroll`` (teacher forcing: the kernel's sequence forward, and its
backward with one weight-gradient product per weight over all T*B rows) and :func:`step` replaces
``RelationalMemory.step`` (single steps, e.g. sampling). :class:`RecordedSteps` runs sampled steps without a
graph and attaches one backward for all of them (``fast/generator.py``). Elsewhere the reference runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.fast.build import Kernels
from relgan.fast.onednn import onednn_available
from relgan.fast.replay import replayed
from relgan.models.relational_memory import RelationalMemory

# the weights of one step, in the order of the kernel's `Parameter` enum
KERNEL_PARAMETERS = (
    "qkv.weight",
    "qkv_norm.weight",
    "qkv_norm.bias",
    "attention_norm.weight",
    "attention_norm.bias",
    "mlp.0.weight",
    "mlp.0.bias",
    "mlp.2.weight",
    "mlp.2.bias",
    "mlp_norm.weight",
    "mlp_norm.bias",
    "memory_gate_projection.weight",
)
# the weights of RelationalMemory.project_inputs, which stays PyTorch code
INPUT_PARAMETERS = ("input_projection.weight", "input_projection.bias", "input_gate_projection.weight")


def supports(core: RelationalMemory) -> str | None:
    """Why the kernel cannot compute ``core`` (None if it can): it knows exactly these parameters."""
    names = {name for name, _ in core.named_parameters()}
    if names != set(KERNEL_PARAMETERS) | set(INPUT_PARAMETERS):
        return f"parameters {sorted(names ^ (set(KERNEL_PARAMETERS) | set(INPUT_PARAMETERS)))} differ from the kernel's"
    if core.qkv_norm.eps != core.attention_norm.eps or core.qkv_norm.eps != core.mlp_norm.eps:
        return "the kernel takes one layer-norm epsilon"
    return None


def applies(core: RelationalMemory, x: Tensor) -> bool:
    """Whether the kernel computes this call: CPU float32 inputs and weights, no autocast."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and core.qkv.weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def unroll(core: RelationalMemory, kernels: Kernels, inputs: tuple[Tensor, ...], memory: Tensor) -> Tensor:
    """``RelationalMemory.unroll``: time-major inputs ([T, B, F], [T, B, H*qkv], [T, B, 2F]), memory [B, N, F]
    -> outputs [B, T, N*F]."""
    if not applies(core, inputs[0]):
        return RelationalMemory.unroll(core, inputs, memory)
    inputs, memory = tuple(p.contiguous() for p in inputs), memory.contiguous()
    if torch.is_grad_enabled():
        return _Sequence.apply(
            kernels, core.num_heads, core.qkv_norm.eps, core.forget_bias, *inputs, memory, *parameters(core)
        )
    return forward(core, kernels, inputs, memory, save=False)[0]


def step(core: RelationalMemory, kernels: Kernels, inputs: tuple[Tensor, ...], memory: Tensor) -> tuple[Tensor, Tensor]:
    """``RelationalMemory.step``: one time slice ([B, F], [B, H*qkv], [B, 2F]), memory [B, N, F] ->
    (output [B, N*F], next memory [B, N, F])."""
    if not applies(core, inputs[0]):
        return RelationalMemory.step(core, inputs, memory)
    outputs = unroll(core, kernels, tuple(p.unsqueeze(0) for p in inputs), memory)[:, 0]
    return outputs, outputs.view(memory.shape)


def parameters(core: RelationalMemory) -> list[Tensor]:
    """The kernel's weights in the order of its enum."""
    named = dict(core.named_parameters())
    return [named[name] for name in KERNEL_PARAMETERS]


def forward(
    core: RelationalMemory, kernels: Kernels, inputs: tuple[Tensor, ...], memory: Tensor, save: bool
) -> list[Tensor]:
    """The kernel without autograd on time-major inputs: [outputs [B, T, N*F], and with ``save`` the buffers
    its backward needs]."""
    return kernels.relational_memory.forward(
        *(p.contiguous() for p in inputs),
        memory.contiguous(),
        parameters(core),
        core.num_heads,
        core.qkv_norm.eps,
        core.forget_bias,
        save,
        onednn_available(),
    )


class _Sequence(torch.autograd.Function):
    """The kernel's sequence forward; it returns the buffers its backward needs, which are kept here."""

    @staticmethod
    def forward(
        ctx,
        kernels: Kernels,
        heads: int,
        eps: float,
        forget_bias: float,
        x: Tensor,
        qkv_x: Tensor,
        gates_x: Tensor,
        memory: Tensor,
        *params: Tensor,
    ) -> Tensor:
        outputs, *saved = kernels.relational_memory.forward(
            x, qkv_x, gates_x, memory, list(params), heads, eps, forget_bias, True, onednn_available()
        )
        ctx.kernels, ctx.heads, ctx.forget_bias, ctx.saved_count = kernels, heads, forget_bias, len(saved)
        ctx.save_for_backward(*saved, *params)
        return outputs

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        tensors = ctx.saved_tensors
        saved, params = list(tensors[: ctx.saved_count]), list(tensors[ctx.saved_count :])
        grads = ctx.kernels.relational_memory.backward(
            grad, saved, params, ctx.heads, ctx.forget_bias, onednn_available()
        )
        return None, None, None, None, *grads


class RecordedSteps:
    """Kernel steps run without autograd and kept, for one backward over all of them.

    ``step`` is ``RelationalMemory.step`` without a graph; ``replay(inputs)`` then returns the outputs of all
    steps [B, T, N*F] as a differentiable function of their time-major inputs (the values the steps read, now
    with gradients) and of the weights: the kernel's sequence backward, as if it had run the whole sequence.
    """

    def __init__(self, core: RelationalMemory, kernels: Kernels) -> None:
        self.core, self.kernels = core, kernels
        self.outputs: list[Tensor] = []  # [B, 1, N*F] per step
        self.saved: list[list[Tensor]] = []  # the kernel's buffers per step (memory: [2, B, N, F], others [1, ...])

    def step(self, inputs: tuple[Tensor, ...], memory: Tensor) -> tuple[Tensor, Tensor]:
        """One step of one time slice of ``project_inputs``: memory [B, N, F] -> (output [B, N*F], next memory)."""
        with torch.no_grad():
            outputs, *saved = forward(self.core, self.kernels, tuple(p.unsqueeze(0) for p in inputs), memory, save=True)
        self.outputs.append(outputs)
        self.saved.append(saved)
        return outputs[:, 0], outputs.view(memory.shape)

    def replay(self, inputs: tuple[Tensor, ...]) -> Tensor:
        """Time-major inputs ([T, B, F], [T, B, H*qkv], [T, B, 2F]) -> outputs [B, T, N*F] of the recorded steps."""
        memories = [saved[0][:1] for saved in self.saved] + [self.saved[-1][0][1:]]
        saved = [torch.cat(memories)] + [torch.cat(buffers) for buffers in list(zip(*self.saved, strict=True))[1:]]
        params, core, kernels = parameters(self.core), self.core, self.kernels

        def backward(grad: Tensor) -> list[Tensor]:
            grads = kernels.relational_memory.backward(
                grad, saved, params, core.num_heads, core.forget_bias, onednn_available()
            )
            return grads[:3] + grads[4:]  # the initial memory is a constant

        return replayed(torch.cat(self.outputs, dim=1), backward, *inputs, *params)
