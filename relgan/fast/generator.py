"""The generator's fast paths on CPU float32: padded output layer, kernel cross-entropy and sampling kernels.

* :func:`token_nll` replaces ``Generator.token_nll``: the output layer padded to a multiple of 64 outputs
  and the C++ cross-entropy reading the first V columns in place.
* :func:`sample` replaces ``Generator.sample``: the fused Gumbel-Softmax kernel per step, the vocabulary's
  input projections computed once and looked up, and, where the relational memory runs on its kernel, the
  steps sampled without a graph and one backward attached for all of them (``replay.py``): the kernel's
  sequence backward plus one output-layer and Gumbel-Softmax backward over all T*B rows.
* :func:`sample_tokens` replaces ``Generator.sample_tokens``: the output layer packed once for oneDNN, the
  projection table, and the inversion kernel (the same uniforms as the reference, so the same tokens).
* :func:`rollout` replaces ``Generator.rollout`` (SeqGAN's Monte-Carlo completions): the same, with the output
  layer and the inversion kernel run only on the rows that sample at each step (a row inside its prefix feeds its
  own token and needs no logits).

The hand-written backward of :func:`sample` assumes the reference's output layer (``output_logits`` =
``self.output``) and relaxation (``relaxed_sample``): the backend applies these paths only while the
fingerprint of ``Generator`` and ``relgan.gumbel`` equals the verified one (``fingerprint.py``), and only to
unconditional generators (a class-conditional one keeps its reference code).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from relgan.decoding import PLAIN, Decoding
from relgan.fast import gumbel as fast_gumbel
from relgan.fast.build import Kernels
from relgan.fast.onednn import linear_for_steps, padded_rows
from relgan.fast.relational_memory import RecordedSteps
from relgan.fast.replay import replayed
from relgan.gumbel import relaxed_sample, straight_through
from relgan.models.generator import Generator

logger = logging.getLogger("relgan")
Recorder = Callable[[], RecordedSteps]


def applies(generator: Generator) -> bool:
    """CPU float32 weights and no autocast."""
    weight = generator.output.weight
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def token_nll(generator: Generator, kernels: Kernels, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """``Generator.token_nll``: tokens [B, T] -> -log p [B, T] in float32."""
    if not applies(generator):
        return Generator.token_nll(generator, tokens, temperature)
    weight, bias = padded_rows(generator.output.weight, generator.output.bias)
    logits = F.linear(generator.teacher_forced(tokens), weight, bias).flatten(0, 1)
    if temperature != 1.0:
        logits = logits / temperature
    return _PaddedCrossEntropy.apply(kernels, logits, tokens.flatten(), generator.vocab_size).view(tokens.shape)


def sample(
    generator: Generator,
    kernels: Kernels,
    batch_size: int,
    beta: float | Tensor,
    *,
    hard: bool = False,
    noise: Tensor | None = None,
    recorder: Recorder | None = None,
) -> tuple[Tensor, Tensor]:
    """``Generator.sample``: (tokens [B, T], relaxed one-hots [B, T, V]). ``recorder`` makes the core's
    recorded steps (None where the core does not run on its kernel)."""
    if not applies(generator):
        return Generator.sample(generator, batch_size, beta, hard=hard, noise=noise)
    learned_beta = isinstance(beta, Tensor) and beta.requires_grad
    if recorder is not None and torch.is_grad_enabled() and not learned_beta:
        tokens, relaxed = _sample_then_attach_backward(generator, kernels, recorder(), batch_size, float(beta), noise)
    else:
        tokens, relaxed = _sample_steps(generator, kernels, batch_size, beta, generator.core.step, noise)
    return tokens, straight_through(tokens, relaxed) if hard else relaxed


@torch.no_grad()
def sample_tokens(
    model: Generator,
    kernels: Kernels,
    batch_size: int,
    *,
    decoding: Decoding = PLAIN,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``Generator.sample_tokens``: tokens [B, T] drawn by ``decoding``, ``generator`` the RNG. The kernel draws
    from softmax(o / temperature); a truncating rule (top-k, top-p) runs the reference."""
    if decoding.truncates:
        _truncation_runs_the_reference()
    if not applies(model) or decoding.truncates:
        return Generator.sample_tokens(model, batch_size, decoding=decoding, generator=generator)
    tokens: list[Tensor] = []
    for logits in _logit_steps(model, batch_size, tokens, model.core.step):
        tokens.append(fast_gumbel.categorical_from_logits(kernels, logits, decoding.temperature, generator))
    return torch.stack(tokens, dim=1)


@functools.cache
def _truncation_runs_the_reference() -> None:
    logger.info("fast backend: top-k and top-p sampling run the reference code (the kernel samples softmax(o / T))")


@torch.no_grad()
def rollout(generator: Generator, kernels: Kernels, prefixes: Tensor, lengths: Tensor, uniforms: Tensor) -> Tensor:
    """``Generator.rollout``: tokens [R, T], prefixes [R, T] kept before lengths [R], then drawn by inversion of
    uniforms [R, T]."""
    if not applies(generator):
        return Generator.rollout(generator, prefixes, lengths, uniforms)
    core, rows = generator.core, prefixes.shape[0]
    weight, bias = padded_rows(generator.output.weight, generator.output.bias)
    table = core.project_inputs(generator.embedding)  # every token's input projections, looked up per step
    state = generator.initial_state(rows)
    token = torch.full_like(prefixes[:, 0], generator.start_id)
    tokens: list[Tensor] = []
    for t in range(generator.seq_len):
        output, state = core.step(tuple(F.embedding(token, part) for part in table), state)
        token = prefixes[:, t].clone()
        sampling = (lengths <= t).nonzero().squeeze(1)
        if len(sampling):
            logits = F.linear(output.index_select(0, sampling), weight, bias)[:, : generator.vocab_size]
            token[sampling] = kernels.sampling.categorical_by_inversion(logits, uniforms[sampling, t].contiguous(), 1.0)
        tokens.append(token)
    return torch.stack(tokens, dim=1)


def _sample_steps(
    generator: Generator, kernels: Kernels, batch_size: int, beta: float | Tensor, step, noise: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(tokens [B, T], relaxed one-hots [B, T, V]) with ``step`` as the core's step; the kernel draws the noise
    unless ``noise`` [B, T, V] is given."""
    tokens: list[Tensor] = []
    relaxed: list[Tensor] = []
    for t, logits in enumerate(_logit_steps(generator, batch_size, tokens, step)):
        if noise is None:
            token, soft = fast_gumbel.relaxed_sample(kernels, logits, beta)
        else:
            token, soft = relaxed_sample(logits, beta, noise[:, t])
        tokens.append(token)
        relaxed.append(soft)
    return torch.stack(tokens, dim=1), torch.stack(relaxed, dim=1)


def _sample_then_attach_backward(
    generator: Generator, kernels: Kernels, recorder: RecordedSteps, batch_size: int, beta: float, noise: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Differentiable sampling as a no-grad loop, then one backward for all steps.

    The fed-back tokens carry no gradient, so the graph of the steps is a chain through the memory alone:
    the kernel's sequence backward and one output-layer backward over all T*B rows replace T backwards of
    B rows. The input projections are recomputed for all steps at once, with gradients.
    """
    with torch.no_grad():
        tokens, relaxed = _sample_steps(generator, kernels, batch_size, beta, recorder.step, noise)
    hidden = recorder.replay(_projected_inputs(generator, tokens))  # [B, T, O]
    weight, bias = generator.output.weight, generator.output.bias
    rows, shape = hidden.detach().flatten(0, 1), hidden.shape

    def backward(grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        grad_logits = fast_gumbel.relaxed_sample_backward(kernels, grad, relaxed, beta).flatten(0, 1)  # [B*T, V]
        return (grad_logits @ weight.detach()).view(shape), grad_logits.t() @ rows, grad_logits.sum(0)

    return tokens, replayed(relaxed, backward, hidden, weight, bias)


def _projected_inputs(generator: Generator, tokens: Tensor) -> tuple[Tensor, ...]:
    """The core's time-major input projections ([T, B, ...]) of the start token and tokens [B, T] but the last."""
    return generator.core.project_inputs(F.embedding(generator.teacher_inputs(tokens).t(), generator.embedding))


def _logit_steps(generator: Generator, batch_size: int, fed_back: list[Tensor], step) -> Iterator[Tensor]:
    """Yield logits [B, V] step by step with ``step`` (the core's, or its recorder's); the caller appends each
    step's token to ``fed_back``."""
    core, device = generator.core, generator.embedding.device
    output_layer = linear_for_steps(*padded_rows(generator.output.weight, generator.output.bias), batch_size)
    state = generator.initial_state(batch_size)
    token = torch.full((batch_size,), generator.start_id, dtype=torch.long, device=device)
    # A step's input projections depend on its token alone. When the batch feeds more tokens than the
    # vocabulary has, project every token once and look rows up: the same values, fewer FLOPs.
    table = core.project_inputs(generator.embedding) if batch_size * generator.seq_len > generator.vocab_size else None
    for _ in range(generator.seq_len):
        if table is None:
            step_inputs = core.project_inputs(F.embedding(token, generator.embedding))
        else:
            step_inputs = tuple(F.embedding(token, rows) for rows in table)
        output, state = step(step_inputs, state)
        yield output_layer(output)[:, : generator.vocab_size]
        token = fed_back[-1]


class _PaddedCrossEntropy(torch.autograd.Function):
    """-log softmax(logits[:, :vocab])[targets] of padded logits [N, V'] read in place: [N]. The kernel keeps
    each row's log-sum-exp; the backward rebuilds the soft-max from it and writes the padded gradient."""

    @staticmethod
    def forward(ctx, kernels: Kernels, logits: Tensor, targets: Tensor, vocab_size: int) -> Tensor:
        nll, logsumexp = kernels.cross_entropy.forward(logits, targets, vocab_size)
        ctx.save_for_backward(logits, logsumexp, targets)
        ctx.kernels, ctx.vocab_size = kernels, vocab_size
        return nll

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        logits, logsumexp, targets = ctx.saved_tensors
        grad_logits = ctx.kernels.cross_entropy.backward(grad, logits, logsumexp, targets, ctx.vocab_size)
        return None, grad_logits, None, None
