"""The generators: one interface (teacher forcing, differentiable sampling, text sampling) and the RelGAN
generator on it: token embedding, a recurrent core (relational memory or LSTM) and an output projection.

A class-conditional generator (``num_classes > 0``) adds a learned class embedding to the input embedding
at every step: the same mechanism for every generator (RMC, LSTM, transformer), the core and its state are
untouched, and the class reaches each step directly instead of through a memory that may forget it. Every
call then takes ``labels`` [B] (class ids); an unconditional generator takes none and computes what it
always computed.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relgan.config import GeneratorConfig
from relgan.decoding import PLAIN, Decoding
from relgan.gumbel import categorical_sample, inverse_cdf_sample, relaxed_sample
from relgan.models.layers import class_vectors, linear, truncated_normal_
from relgan.models.lstm import LSTMCore
from relgan.models.relational_memory import RelationalMemory

T = TypeVar("T")


class SequenceGenerator(nn.Module):
    """Autoregressive generator over ``vocab_size`` tokens for ``seq_len`` steps, starting from ``start_id``.

    Call through ``forward`` (so that a DDP wrapper synchronises gradients):
    ``forward(tokens)`` -> teacher-forced logits [B, T, V];
    ``forward(tokens, mode="nll")`` -> teacher-forced negative log-likelihood of each token [B, T] (nats);
    ``forward(mode="sample", batch_size=B, beta=beta)`` -> (tokens [B, T], relaxed one-hots [B, T, V]);
    ``forward(prefixes, mode="rollout", lengths=L, uniforms=U)`` -> completed sentences [B, T] (:meth:`rollout`);
    a conditional generator takes ``labels`` [B] in each.

    A subclass defines teacher forcing (:meth:`logits`) and one decoding step (:meth:`initial_state`,
    :meth:`next_logits`), and creates ``class_embedding`` [num_classes, E] (after its other weights, so that
    those start as an unconditional generator's); sampling is written once, here. Its capabilities, which the
    training loop reads instead of its name: ``cuda_graphs`` (its training steps were verified captured as CUDA
    graphs) and ``batched`` (it runs under ``torch.func.vmap``, so ``run.replicas=batched`` can train it).
    """

    cuda_graphs: ClassVar[bool] = True
    batched: ClassVar[bool] = True

    def __init__(
        self, config: GeneratorConfig, vocab_size: int, seq_len: int, start_id: int, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.config = config
        self.vocab_size, self.seq_len, self.start_id, self.num_classes = vocab_size, seq_len, start_id, num_classes
        self.class_embedding: nn.Parameter | None = None

    def forward(
        self,
        tokens: Tensor | None = None,
        *,
        mode: str = "logits",
        batch_size: int | None = None,
        beta: float | Tensor = 1.0,
        hard: bool = False,
        noise: Tensor | None = None,
        labels: Tensor | None = None,
        lengths: Tensor | None = None,
        uniforms: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        # unconditional calls keep their signatures, as overrides of your own (and the fast paths) expect them
        conditional: dict[str, Any] = {} if labels is None else {"labels": labels}
        if mode == "logits":
            return self.logits(_needed(tokens, "tokens", mode), **conditional)
        if mode == "nll":
            return self.token_nll(_needed(tokens, "tokens", mode), **conditional)
        if mode == "sample":
            return self.sample(_needed(batch_size, "batch_size", mode), beta, hard=hard, noise=noise, **conditional)
        if mode == "rollout":
            return self.rollout(
                _needed(tokens, "tokens", mode),
                _needed(lengths, "lengths", mode),
                _needed(uniforms, "uniforms", mode),
                **conditional,
            )
        raise ValueError(f"unknown generator mode {mode!r}")

    @classmethod
    def floats_per_token(cls, config: GeneratorConfig, vocab_size: int) -> int:
        """About how many floats a training step keeps per sentence and position (logits, their softmax and
        gradient, the core's activations for the backward): what sizes a batch's memory."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def logits(self, tokens: Tensor, labels: Tensor | None = None) -> Tensor:
        """Teacher forcing: tokens [B, T] -> logits [B, T, V] predicting each token from the ones before it."""
        raise NotImplementedError

    def condition(self, embedded: Tensor, labels: Tensor | None) -> Tensor:
        """Input embeddings [..., B, E] plus each sentence's class embedding (``labels`` [B]); unchanged for an
        unconditional generator."""
        vectors = class_vectors(self.class_embedding, labels, "generator")
        return embedded if vectors is None else embedded + vectors

    def teacher_inputs(self, tokens: Tensor) -> Tensor:
        """tokens [B, T] -> the inputs that predict them [B, T]: the start token, then tokens 0 .. T-2."""
        start = tokens.new_full((tokens.shape[0], 1), self.start_id)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def initial_state(self, batch_size: int) -> Any:
        """The decoding state before the first step."""
        raise NotImplementedError

    def next_logits(self, token: Tensor, state: Any, labels: Tensor | None = None) -> tuple[Tensor, Any]:
        """One decoding step: the last token [B] and the state -> (logits of the next token [B, V], new state)."""
        raise NotImplementedError

    def token_nll(self, tokens: Tensor, temperature: float = 1.0, labels: Tensor | None = None) -> Tensor:
        """Teacher forcing: tokens [B, T] -> -log p(token | the ones before it) [B, T] in float32, under
        softmax(logits / temperature)."""
        logits = self.logits(tokens, labels).float() / temperature
        return F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(tokens.shape)

    def sample(
        self,
        batch_size: int,
        beta: float | Tensor,
        *,
        hard: bool = False,
        noise: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Differentiable sampling: (tokens [B, T], relaxed one-hots softmax(beta*(o+g)) [B, T, V]).

        The sampled (hard) token argmax(o+g) is fed back; gradients reach the weights (and a learned beta)
        through the relaxed vectors. ``noise`` [B, T, V] is the Gumbel noise g (drawn when None).
        """
        tokens, relaxed = [], []
        state = self.initial_state(batch_size)
        token = torch.full((batch_size,), self.start_id, dtype=torch.long, device=self.device)
        for t in range(self.seq_len):
            logits, state = self.next_logits(token, state, labels)
            token, soft = relaxed_sample(logits, beta, None if noise is None else noise[:, t], hard=hard)
            tokens.append(token)
            relaxed.append(soft)
        return torch.stack(tokens, dim=1), torch.stack(relaxed, dim=1)

    @torch.no_grad()
    def rollout(self, prefixes: Tensor, lengths: Tensor, uniforms: Tensor, labels: Tensor | None = None) -> Tensor:
        """Monte-Carlo completions: tokens [B, T] equal to prefixes [B, T] before position lengths [B] (0: none of
        it) and drawn from the generator from there on, each by inversion of one uniform of uniforms [B, T].

        Every row runs all T steps in lockstep (a row still in its prefix feeds its own token), so any mix of
        prefix lengths is one batched pass.
        """
        tokens = []
        state = self.initial_state(prefixes.shape[0])
        token = torch.full_like(prefixes[:, 0], self.start_id)
        for t in range(self.seq_len):
            logits, state = self.next_logits(token, state, labels)
            drawn = inverse_cdf_sample(torch.softmax(logits.float(), dim=-1), uniforms[:, t])
            token = torch.where(lengths > t, prefixes[:, t], drawn)
            tokens.append(token)
        return torch.stack(tokens, dim=1)

    @torch.no_grad()
    def sample_tokens(
        self,
        batch_size: int,
        *,
        decoding: Decoding = PLAIN,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Sampling for text: tokens [B, T], each drawn from the decoding rule's distribution (relgan/decoding.py;
        the default: softmax(o)), no relaxation, no graph.

        Exact categorical draws by inversion (one uniform per row from ``generator``): the same distribution
        as the training path's Gumbel-Max.
        """
        tokens = []
        state = self.initial_state(batch_size)
        token = torch.full((batch_size,), self.start_id, dtype=torch.long, device=self.device)
        for _ in range(self.seq_len):
            logits, state = self.next_logits(token, state, labels)
            token = categorical_sample(decoding.probabilities(logits), generator)
            tokens.append(token)
        return torch.stack(tokens, dim=1)


class Generator(SequenceGenerator):
    """RelGAN's generator: embedding -> relational memory core (or LSTM) -> linear output layer."""

    def __init__(
        self, config: GeneratorConfig, vocab_size: int, seq_len: int, start_id: int, num_classes: int = 0
    ) -> None:
        super().__init__(config, vocab_size, seq_len, start_id, num_classes)
        self.embedding = nn.Parameter(torch.empty(vocab_size, config.embedding_dim))
        truncated_normal_(self.embedding, 1 / math.sqrt(vocab_size))
        if config.architecture == "rmc":
            self.core: RelationalMemory | LSTMCore = RelationalMemory(
                config.embedding_dim, config.mem_slots, config.num_heads, config.head_size
            )
        else:
            self.core = LSTMCore(config.embedding_dim, config.hidden_size)
        self.output = linear(self.core.output_size, vocab_size)
        if num_classes:
            # a class vector is one more input embedding: the token embedding's scale
            self.class_embedding = nn.Parameter(torch.empty(num_classes, config.embedding_dim))
            truncated_normal_(self.class_embedding, 1 / math.sqrt(vocab_size))

    @classmethod
    def floats_per_token(cls, config: GeneratorConfig, vocab_size: int) -> int:
        width = (
            config.mem_slots * config.num_heads * config.head_size
            if config.architecture == "rmc"
            else (config.hidden_size)
        )
        return 3 * vocab_size + 40 * width

    def logits(self, tokens: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.output_logits(self.teacher_forced(tokens, labels))

    def teacher_forced(self, tokens: Tensor, labels: Tensor | None = None) -> Tensor:
        """tokens [B, T] -> the core's outputs [B, T, O], step t having read the start token and tokens < t."""
        embedded = F.embedding(self.teacher_inputs(tokens).t(), self.embedding)  # time-major [T, B, E]
        projected = self.core.project_inputs(self.condition(embedded, labels))
        return self.core.unroll(projected, self.initial_state(tokens.shape[0]))

    def output_logits(self, hidden: Tensor) -> Tensor:
        """The output layer: the core's outputs [..., O] -> logits [..., V]."""
        return self.output(hidden)

    def initial_state(self, batch_size: int) -> Any:
        return self.core.initial_state(batch_size, self.embedding.device)

    def next_logits(self, token: Tensor, state: Any, labels: Tensor | None = None) -> tuple[Tensor, Any]:
        embedded = self.condition(F.embedding(token, self.embedding), labels)
        output, state = self.core.step(self.core.project_inputs(embedded), state)
        return self.output_logits(output), state


def _needed(value: T | None, name: str, mode: str) -> T:
    if value is None:
        raise ValueError(f"generator mode {mode!r} needs {name}")
    return value
