"""The relational memory core (Santoro et al., 2018) exactly as RelGAN's TensorFlow code computes one step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relgan.models.layers import JointLayerNorm, linear


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
        self.forget_bias = 1.0  # added to the forget gate's pre-activation, as in the official code
        f = self.mem_size
        self.input_projection = linear(input_size, f, bias=True)
        self.qkv = linear(f, num_heads * self.qkv_size, bias=False)
        self.qkv_norm = JointLayerNorm(num_heads * self.qkv_size)
        self.attention_norm = JointLayerNorm(f)
        self.mlp = nn.Sequential(linear(f, f), nn.ReLU(), linear(f, f))
        self.mlp_norm = JointLayerNorm(f)
        self.input_gate_projection = linear(f, 2 * f, bias=False)
        self.memory_gate_projection = linear(f, 2 * f, bias=False)

    def initial_state(self, batch_size: int, device: torch.device | str) -> Tensor:
        """Identity rows padded with zeros: [B, N, F], in the weights' dtype."""
        eye = torch.eye(self.mem_slots, self.mem_size, device=device, dtype=self.qkv.weight.dtype)
        return eye.expand(batch_size, -1, -1).contiguous()

    def project_inputs(self, embedded: Tensor) -> tuple[Tensor, ...]:
        """Everything of a step that depends on its input alone, for all steps at once.

        embedded [..., E] -> (x [..., F], qkv of x [..., H*qkv], input gates [..., 2F]); the leading
        dimensions are [T, B] for a batch of sequences (time-major) or [B] for one step.
        """
        x = self.input_projection(embedded)
        return x, self.qkv(x), self.input_gate_projection(x)

    def step(self, inputs: tuple[Tensor, ...], memory: Tensor) -> tuple[Tensor, Tensor]:
        """One step from one time slice of :meth:`project_inputs` ([B, F], [B, H*qkv], [B, 2F]).

        memory [B, N, F] -> (output [B, N*F], next memory [B, N, F]).
        """
        x, qkv_x, gates_x = inputs
        memory_plus_input = torch.cat([memory, x.unsqueeze(1)], dim=1)  # [B, N+1, F]
        qkv = torch.cat([self.qkv(memory), qkv_x.unsqueeze(1)], dim=1)
        attended = self.attend(self.qkv_norm(qkv))
        hidden = self.attention_norm(memory_plus_input + attended)
        hidden = self.mlp_norm(hidden + self.mlp(hidden))
        candidate = hidden[:, :-1]  # the input row only takes part in the attention
        gates = self.memory_gate_projection(torch.tanh(memory)) + gates_x.unsqueeze(1)
        input_gate, forget_gate = gates.float().chunk(2, dim=-1)
        next_memory = (
            torch.sigmoid(input_gate) * torch.tanh(candidate) + torch.sigmoid(forget_gate + self.forget_bias) * memory
        )
        return next_memory.flatten(1), next_memory

    def unroll(self, inputs: tuple[Tensor, ...], memory: Tensor) -> Tensor:
        """All steps of time-major :meth:`project_inputs` ([T, B, F], [T, B, H*qkv], [T, B, 2F]) from memory
        [B, N, F]: outputs [B, T, N*F] (the memory after each step, flattened)."""
        outputs = []
        for step_inputs in zip(*(p.unbind(0) for p in inputs), strict=True):
            output, memory = self.step(step_inputs, memory)
            outputs.append(output)
        return torch.stack(outputs, dim=1)

    def attend(self, qkv: Tensor) -> Tensor:
        """Multi-head attention among the N+1 rows: qkv [B, R, H*qkv] -> [B, R, F]."""
        batch, rows, _ = qkv.shape
        heads = qkv.view(batch, rows, self.num_heads, self.qkv_size).transpose(1, 2)
        q, k, v = heads.split([self.key_size, self.key_size, self.head_size], dim=-1)
        # The official code scales by the whole per-head qkv width, not by the key width.
        weights = torch.softmax((q * self.qkv_size**-0.5) @ k.transpose(-1, -2), dim=-1)
        return (weights @ v).transpose(1, 2).reshape(batch, rows, self.mem_size)
