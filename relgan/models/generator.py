"""The generator: token embedding, a recurrent core (relational memory or LSTM) and an output projection."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relgan.config import GeneratorConfig
from relgan.gumbel import categorical_from_logits, relaxed_sample, relaxed_sample_backward, straight_through
from relgan.models.cross_entropy import padded_cross_entropy
from relgan.models.layers import linear, linear_for_steps, pad_output_rows, padded_linear, truncated_normal_
from relgan.models.lstm import LSTMCore
from relgan.models.relational_memory import RecordedSteps, RelationalMemory
from relgan.models.replay import replayed

# a core's step: (time slice of its input projections, state) -> (output [B, O], next state)
CoreStep = Callable[[tuple[Tensor, ...], Any], tuple[Tensor, Any]]


class Generator(nn.Module):
    """Autoregressive generator over ``vocab_size`` tokens for ``seq_len`` steps, starting from ``start_id``.

    Call through ``forward`` (so that a DDP wrapper synchronises gradients):
    ``forward(tokens)`` -> teacher-forced logits [B, T, V];
    ``forward(tokens, mode="nll")`` -> teacher-forced negative log-likelihood of each token [B, T] (nats);
    ``forward(mode="sample", batch_size=B, beta=beta)`` -> (tokens [B, T], relaxed one-hots [B, T, V]).
    """

    def __init__(self, config: GeneratorConfig, vocab_size: int, seq_len: int, start_id: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size, self.seq_len, self.start_id = vocab_size, seq_len, start_id
        self.embedding = nn.Parameter(torch.empty(vocab_size, config.embedding_dim))
        truncated_normal_(self.embedding, 1 / math.sqrt(vocab_size))
        if config.architecture == "rmc":
            self.core: RelationalMemory | LSTMCore = RelationalMemory(
                config.embedding_dim, config.mem_slots, config.num_heads, config.head_size
            )
        else:
            self.core = LSTMCore(config.embedding_dim, config.hidden_size)
        self.output = linear(self.core.output_size, vocab_size)

    def forward(self, tokens: Tensor | None = None, *, mode: str = "logits", batch_size: int | None = None,
                beta: float | Tensor = 1.0, hard: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if mode == "logits":
            return self.logits(tokens)
        if mode == "nll":
            return self.token_nll(tokens)
        if mode == "sample":
            return self.sample(batch_size, beta, hard=hard)
        raise ValueError(f"unknown generator mode {mode!r}")

    def logits(self, tokens: Tensor) -> Tensor:
        """Teacher forcing: tokens [B, T] -> logits [B, T, V] predicting each token from the ones before it."""
        return self._logits(self._teacher_forced(tokens))

    def token_nll(self, tokens: Tensor, temperature: float = 1.0) -> Tensor:
        """Teacher forcing: tokens [B, T] -> -log p(token | the ones before it) [B, T] in float32, under
        softmax(logits / temperature).

        The cross-entropy reads the padded output layer's logits in place (see ``padded_linear``).
        """
        weight, bias = pad_output_rows(self.output.weight, self.output.bias)
        logits = F.linear(self._teacher_forced(tokens), weight, bias)
        if temperature != 1.0:
            logits = logits / temperature
        return padded_cross_entropy(logits.flatten(0, 1), tokens.flatten(), self.vocab_size).view(tokens.shape)

    def _teacher_forced(self, tokens: Tensor) -> Tensor:
        """tokens [B, T] -> the core's outputs [B, T, O], step t having read the start token and tokens < t."""
        return self.core.unroll(self._projected_inputs(tokens), self.core.initial_state(tokens.shape[0], tokens.device))

    def _projected_inputs(self, tokens: Tensor) -> tuple[Tensor, ...]:
        """The core's time-major input projections ([T, B, ...]) of the start token and tokens [B, T] but the last."""
        start = tokens.new_full((tokens.shape[0], 1), self.start_id)
        inputs = torch.cat([start, tokens[:, :-1]], dim=1)
        return self.core.project_inputs(F.embedding(inputs.t(), self.embedding))

    def _logits(self, hidden: Tensor) -> Tensor:
        """Output projection [..., core output] -> [..., V]."""
        return padded_linear(hidden, self.output.weight, self.output.bias)

    def sample(self, batch_size: int, beta: float | Tensor, *, hard: bool = False) -> tuple[Tensor, Tensor]:
        """Differentiable sampling: (tokens [B, T], relaxed one-hots softmax(beta*(o+g)) [B, T, V]).

        The sampled (hard) token is fed back; gradients reach the weights through the relaxed vectors.
        """
        learned_beta = isinstance(beta, Tensor) and beta.requires_grad
        recorder = self.core.recorder() if torch.is_grad_enabled() and not learned_beta else None
        if recorder is not None:
            tokens, relaxed = self._sample_then_attach_backward(batch_size, float(beta), recorder)
        else:
            tokens, relaxed = self._sample_steps(batch_size, beta, self.core.step)
        return tokens, straight_through(tokens, relaxed) if hard else relaxed

    def _sample_steps(self, batch_size: int, beta: float | Tensor, step: CoreStep) -> tuple[Tensor, Tensor]:
        """(tokens [B, T], relaxed one-hots [B, T, V]) with ``step`` as the core's step."""
        tokens, relaxed = [], []
        for logits in self._unroll(batch_size, tokens, step):
            token, soft = relaxed_sample(logits, beta)
            tokens.append(token)
            relaxed.append(soft)
        return torch.stack(tokens, dim=1), torch.stack(relaxed, dim=1)

    def _sample_then_attach_backward(self, batch_size: int, beta: float,
                                     recorder: RecordedSteps) -> tuple[Tensor, Tensor]:
        """Differentiable sampling as a no-grad loop, then one backward for all steps (``models/replay.py``).

        The fed-back tokens carry no gradient, so the graph of the steps is a chain through the memory alone:
        the kernel's sequence backward and one output-layer backward over all T*B rows replace T backwards of
        B rows. The input projections are recomputed for all steps at once, with gradients.
        """
        with torch.no_grad():
            tokens, relaxed = self._sample_steps(batch_size, beta, recorder.step)
        hidden = recorder.replay(self._projected_inputs(tokens))  # [B, T, O]
        weight, bias, rows, shape = self.output.weight, self.output.bias, hidden.detach().flatten(0, 1), hidden.shape

        def backward(grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            grad_logits = relaxed_sample_backward(grad, relaxed, beta).flatten(0, 1)  # [B*T, V]
            return (grad_logits @ weight.detach()).view(shape), grad_logits.t() @ rows, grad_logits.sum(0)

        return tokens, replayed(relaxed, backward, hidden, weight, bias)

    @torch.no_grad()
    def sample_tokens(self, batch_size: int, *, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> Tensor:
        """Fast path for text: tokens [B, T] ~ softmax(o / temperature), no relaxation, no graph.

        Exact categorical draws by inversion (one uniform per row) instead of Gumbel noise on all V
        logits: the same distribution as the training path's Gumbel-Max, several times cheaper.
        """
        tokens: list[Tensor] = []
        for logits in self._unroll(batch_size, tokens, self.core.step):
            tokens.append(categorical_from_logits(logits, temperature, generator))
        return torch.stack(tokens, dim=1)

    def _unroll(self, batch_size: int, fed_back: list[Tensor], step: CoreStep):
        """Yield logits [B, V] step by step with ``step`` (the core's, or its recorder's); the caller appends each
        step's token to ``fed_back``."""
        device = self.embedding.device
        output_layer = linear_for_steps(*pad_output_rows(self.output.weight, self.output.bias), batch_size)
        state = self.core.initial_state(batch_size, device)
        token = torch.full((batch_size,), self.start_id, dtype=torch.long, device=device)
        # A step's input projections depend on its token alone. When the batch feeds more tokens than the
        # vocabulary has, project every token once and look rows up: the same values, fewer FLOPs.
        table = self.core.project_inputs(self.embedding) if batch_size * self.seq_len > self.vocab_size else None
        for _ in range(self.seq_len):
            if table is None:
                step_inputs = self.core.project_inputs(F.embedding(token, self.embedding))
            else:
                step_inputs = tuple(F.embedding(token, rows) for rows in table)
            output, state = step(step_inputs, state)
            yield output_layer(output)[:, : self.vocab_size]
            token = fed_back[-1]
