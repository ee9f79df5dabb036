"""RELAX (Grathwohl, Choi, Wu, Roeder & Duvenaud, ICLR 2018, "Backpropagation through the Void: Optimizing control
variates for black-box gradient estimation"): REBAR's estimator with a learned surrogate added to its control
variate, c(z) = eta f(softmax(z / lambda)) + r(z), the form the paper uses for discrete variables in its VAE
experiments, trained with eta and lambda on the gradient of the estimator's variance (its Section 3.1). Unbiased
for any r.

Per step, as REBAR here (relgan/algorithms/rebar.py): c_t(s_t, z_t) may read the state s_t in which token t was
drawn (Section 3.3's action-dependent control variate for sequential decisions). r is a small network of
softmax(z_t / lambda), the generator's distribution p(. | b_<t) at that step (the state, without a gradient) and
the step's position; its last layer starts at zero, so RELAX starts as REBAR.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from relgan.algorithms.base import Score
from relgan.algorithms.rebar import Rebar, RebarControl, RebarOptions
from relgan.config import setting


@dataclass
class RelaxOptions(RebarOptions):
    surrogate_hidden: int = setting(32, "width of RELAX's surrogate network r", min=1)


class RelaxControl(RebarControl):
    """REBAR's c_t plus r(softmax(z_t / lambda), p(. | b_<t), one_hot(t))."""

    def __init__(self, vocab_size: int, seq_len: int, temperature: float, hidden: int) -> None:
        super().__init__(seq_len, temperature)
        output = nn.Linear(hidden, 1)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.surrogate = nn.Sequential(nn.Linear(2 * vocab_size + seq_len, hidden), nn.ReLU(), output)

    def forward(self, perturbed: Tensor, tokens: Tensor, probs: Tensor, labels: Tensor | None, score: Score) -> Tensor:
        size, length, _ = perturbed.shape
        position = torch.eye(length, device=perturbed.device, dtype=perturbed.dtype).expand(size, length, length)
        features = torch.cat([self.relax(perturbed), probs, position], dim=-1)
        return super().forward(perturbed, tokens, probs, labels, score) + self.surrogate(features).squeeze(-1)


class Relax(Rebar):
    name = "relax"
    label = "RELAX"
    summary = "REBAR whose control variate adds a learned surrogate network, trained to lower the variance"
    Options = RelaxOptions
    options: RelaxOptions

    def control(self, vocab_size: int, seq_len: int) -> nn.Module:
        return RelaxControl(vocab_size, seq_len, self.options.temperature, self.options.surrogate_hidden)
