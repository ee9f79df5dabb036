"""The relational memory core (Santoro et al., 2018) exactly as RelGAN's TensorFlow code computes one step.

On CPU in float32 the C++ kernel ``csrc/relational_memory.cpp`` (see ``relgan.native``) computes the same
steps, forward and backward: whole sequences (teacher forcing) and single steps (sampling), and the backward of
steps sampled one by one (:class:`RecordedSteps`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relgan import native
from relgan.models.layers import JointLayerNorm, linear, unroll_steps
from relgan.models.replay import replayed


class RelationalMemory(nn.Module):
    """One attention block over memory rows and the projected input row, then unit gating.

    Memory state: [B, N, F] with N = ``mem_slots`` and F = ``num_heads * head_size``; output [B, N*F].
    Keys have the width of the heads (``key_size = head_size``), as in the official defaults.
    """

    def __init__(self, input_size: int, mem_slots: int, num_heads: int, head_size: int) -> None:
        super().__init__()
        self.mem_slots, self.num_heads, self.head_size = mem_slots, num_heads, head_size
        self.key_size = head_size
        self.mem_size = num_heads * head_size
        self.qkv_size = 2 * self.key_size + head_size
        self.output_size = mem_slots * self.mem_size
        f = self.mem_size
        self.input_projection = linear(input_size, f, bias=True)
        self.qkv = linear(f, num_heads * self.qkv_size, bias=False)
        self.qkv_norm = JointLayerNorm(num_heads * self.qkv_size)
        self.attention_norm = JointLayerNorm(f)
        self.mlp = nn.Sequential(linear(f, f), nn.ReLU(), linear(f, f))
        self.mlp_norm = JointLayerNorm(f)
        self.input_gate_projection = linear(f, 2 * f, bias=False)
        self.memory_gate_projection = linear(f, 2 * f, bias=False)

    def initial_state(self, batch_size: int, device: torch.device) -> Tensor:
        """Identity rows padded with zeros: [B, N, F]."""
        eye = torch.eye(self.mem_slots, self.mem_size, device=device)
        return eye.expand(batch_size, -1, -1).contiguous()

    def project_inputs(self, embedded: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Everything of a step that depends on its input alone, for all steps at once.

        embedded [..., E] -> (x [..., F], qkv of x [..., H*qkv], input gates [..., 2F]); the leading
        dimensions are [T, B] for a batch of sequences (time-major) or [V] for every token of the vocabulary.
        """
        x = self.input_projection(embedded)
        return x, self.qkv(x), self.input_gate_projection(x)

    def step(self, inputs: tuple[Tensor, Tensor, Tensor], memory: Tensor) -> tuple[Tensor, Tensor]:
        """One step from one time slice of :meth:`project_inputs` ([B, F], [B, H*qkv], [B, 2F]).

        memory [B, N, F] -> (output [B, N*F], next memory [B, N, F]).
        """
        x, qkv_x, gates_x = inputs
        batch = memory.shape[0]
        if self._kernel_applies(x):
            outputs = self.unroll(tuple(p.unsqueeze(0) for p in inputs), memory)[:, 0]
            return outputs, outputs.view(memory.shape)
        memory_plus_input = torch.cat([memory, x.unsqueeze(1)], dim=1)
        qkv = torch.cat([self.qkv(memory), qkv_x.unsqueeze(1)], dim=1)
        attended = self._attend(self.qkv_norm(qkv))
        hidden = self.attention_norm(memory_plus_input + attended)
        hidden = self.mlp_norm(hidden + self.mlp(hidden))
        candidate = hidden[:, :-1]
        gates = self.memory_gate_projection(torch.tanh(memory)) + gates_x.unsqueeze(1)
        input_gate, forget_gate = gates.float().chunk(2, dim=-1)
        next_memory = torch.sigmoid(input_gate) * torch.tanh(candidate) + torch.sigmoid(forget_gate + 1.0) * memory
        return next_memory.reshape(batch, self.output_size), next_memory

    def unroll(self, inputs: tuple[Tensor, Tensor, Tensor], memory: Tensor) -> Tensor:
        """All steps of time-major :meth:`project_inputs` ([T, B, F], [T, B, H*qkv], [T, B, 2F]) from memory
        [B, N, F]: outputs [B, T, N*F] (the memory after each step, flattened)."""
        if not self._kernel_applies(inputs[0]):
            return unroll_steps(self.step, inputs, memory)
        with torch.autocast("cpu", enabled=False):
            if torch.is_grad_enabled():
                inputs, memory = tuple(p.contiguous() for p in inputs), memory.contiguous()
                return _RelationalMemorySequence.apply(self.num_heads, self.qkv_norm.eps, *inputs, memory,
                                                       *self.kernel_parameters())
            return self._kernel_forward(inputs, memory, save=False)[0]

    def recorder(self) -> RecordedSteps | None:
        """Steps for sampling with gradients whose backward runs once over all of them (None where the kernel
        does not apply: not CPU float32, or under autocast)."""
        weight = self.qkv.weight
        if torch.is_autocast_enabled(weight.device.type) or not self._kernel_applies(weight):
            return None
        return RecordedSteps(self)

    def kernel_parameters(self) -> list[Tensor]:
        """The weights in the order of the C++ kernel's ``Parameter`` enum."""
        return [self.qkv.weight, self.qkv_norm.weight, self.qkv_norm.bias, self.attention_norm.weight,
                self.attention_norm.bias, self.mlp[0].weight, self.mlp[0].bias, self.mlp[2].weight, self.mlp[2].bias,
                self.mlp_norm.weight, self.mlp_norm.bias, self.memory_gate_projection.weight]

    def _kernel_forward(self, inputs: tuple[Tensor, ...], memory: Tensor, save: bool) -> list[Tensor]:
        """The kernel without autograd on time-major inputs: [outputs [B, T, N*F], and with ``save`` the
        buffers its backward needs]."""
        return torch.ops.relgan_relational_memory.forward(
            *(p.contiguous() for p in inputs), memory.contiguous(), self.kernel_parameters(), self.num_heads,
            self.qkv_norm.eps, save, native.onednn_available())

    def _kernel_applies(self, x: Tensor) -> bool:
        return native.kernels_for(x.device, x.dtype) and self.qkv.weight.dtype == torch.float32

    def _attend(self, qkv: Tensor) -> Tensor:
        """Multi-head attention among the N+1 rows: qkv [B, R, H*qkv] -> [B, R, F]."""
        batch, rows, _ = qkv.shape
        heads = qkv.view(batch, rows, self.num_heads, self.qkv_size).transpose(1, 2)
        q, k, v = heads.split([self.key_size, self.key_size, self.head_size], dim=-1)
        # The official code scales by the whole per-head qkv width, not by the key width.
        weights = torch.softmax((q * self.qkv_size**-0.5) @ k.transpose(-1, -2), dim=-1)
        return (weights @ v).transpose(1, 2).reshape(batch, rows, self.mem_size)


class _RelationalMemorySequence(torch.autograd.Function):
    """The C++ kernel's sequence forward; it returns the buffers its backward needs, which are kept here."""

    @staticmethod
    def forward(ctx, heads: int, eps: float, x: Tensor, qkv_x: Tensor, gates_x: Tensor, memory: Tensor,
                *params: Tensor) -> Tensor:
        outputs, *saved = torch.ops.relgan_relational_memory.forward(
            x, qkv_x, gates_x, memory, list(params), heads, eps, True, native.onednn_available())
        ctx.heads, ctx.saved_count = heads, len(saved)
        ctx.save_for_backward(*saved, *params)
        return outputs

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        tensors = ctx.saved_tensors
        saved, params = list(tensors[: ctx.saved_count]), list(tensors[ctx.saved_count:])
        return None, None, *torch.ops.relgan_relational_memory.backward(grad, saved, params, ctx.heads,
                                                                        native.onednn_available())


class RecordedSteps:
    """Kernel steps run without autograd and kept, for one backward over all of them (``Generator.sample``).

    ``step`` is :meth:`RelationalMemory.step` without a graph; ``replay(inputs)`` then returns the outputs of all
    steps [B, T, N*F] as a differentiable function of their time-major inputs (the values the steps read, now
    with gradients) and of the weights: the kernel's sequence backward, as if it had run the whole sequence.
    """

    def __init__(self, core: RelationalMemory) -> None:
        self.core = core
        self.outputs: list[Tensor] = []  # [B, 1, N*F] per step
        self.saved: list[list[Tensor]] = []  # the kernel's buffers per step (memory: [2, B, N, F], others [1, ...])

    def step(self, inputs: tuple[Tensor, Tensor, Tensor], memory: Tensor) -> tuple[Tensor, Tensor]:
        """One step of one time slice of ``project_inputs``: memory [B, N, F] -> (output [B, N*F], next memory)."""
        with torch.no_grad():
            outputs, *saved = self.core._kernel_forward(tuple(p.unsqueeze(0) for p in inputs), memory, save=True)
        self.outputs.append(outputs)
        self.saved.append(saved)
        return outputs[:, 0], outputs.view(memory.shape)

    def replay(self, inputs: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Time-major inputs ([T, B, F], [T, B, H*qkv], [T, B, 2F]) -> outputs [B, T, N*F] of the recorded steps."""
        memories = [saved[0][:1] for saved in self.saved] + [self.saved[-1][0][1:]]
        saved = [torch.cat(memories)] + [torch.cat(buffers) for buffers in list(zip(*self.saved))[1:]]
        params, heads = self.core.kernel_parameters(), self.core.num_heads

        def backward(grad: Tensor) -> list[Tensor]:
            grads = torch.ops.relgan_relational_memory.backward(grad, saved, params, heads, native.onednn_available())
            return grads[:3] + grads[4:]  # the initial memory is a constant

        return replayed(torch.cat(self.outputs, dim=1), backward, *inputs, *params)
