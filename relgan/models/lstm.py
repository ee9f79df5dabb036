"""An LSTM core with the relational memory's step interface (the paper's LSTM generator ablation)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relgan.models.layers import linear, truncated_normal_


class LSTMCore(nn.Module):
    """LSTM cell; state (h, c) each [B, H]; output h [B, H]."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.input_projection = linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_weight = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        truncated_normal_(self.recurrent_weight, 1 / math.sqrt(hidden_size))

    def initial_state(self, batch_size: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=self.recurrent_weight.dtype)
        return zeros, zeros.clone()

    def project_inputs(self, embedded: Tensor) -> tuple[Tensor, ...]:
        """embedded [..., E] -> (input part of the gates [..., 4H],); leading dimensions [T, B] or [B]."""
        return (self.input_projection(embedded),)

    def step(self, inputs: tuple[Tensor, ...], state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """inputs ([B, 4H],), state ([B, H], [B, H]) -> (h [B, H], (h, c))."""
        h, c = state
        gates = (inputs[0] + F.linear(h, self.recurrent_weight)).float()
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def unroll(self, inputs: tuple[Tensor, ...], state: tuple[Tensor, Tensor]) -> Tensor:
        """All steps of time-major inputs ([T, B, 4H],): outputs h [B, T, H]."""
        outputs = []
        for (step_input,) in zip(inputs[0].unbind(0)):
            output, state = self.step((step_input,), state)
            outputs.append(output)
        return torch.stack(outputs, dim=1)
