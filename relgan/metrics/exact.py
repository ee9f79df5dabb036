"""Exact divergences between a generator and an oracle small enough to enumerate every sentence (V^T of them,
at most :data:`MAX_SENTENCES`): forward KL(oracle || G), reverse KL(G || oracle), total variation and G's entropy,
for G as trained or under any decoding rule (relgan/decoding.py), whose sentence distribution is the product of
its per-step distributions.

Every sentence's log-probability is computed by teacher forcing, in chunks, in float64 from the logits on: the
probabilities then sum to 1 to about 1e-12. KLs and entropies are in nats per token (divided by T, beside
NLL_oracle); total variation is over sentences. A rule that truncates (top-k, top-p) gives sentences the oracle
can produce probability 0, so its forward KL is infinite: reported as such, never dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from relgan.decoding import Decoding

if TYPE_CHECKING:
    from relgan.models import SequenceGenerator
    from relgan.oracle import OracleLSTM

MAX_SENTENCES = 2**20  # enumerated in seconds (bench/exact_metrics.py)
CHUNK = 65536


def enumerable(vocab_size: int, seq_len: int) -> bool:
    return vocab_size**seq_len <= MAX_SENTENCES


def all_sentences(vocab_size: int, seq_len: int, start: int, stop: int) -> Tensor:
    """Sentences start..stop-1 [stop - start, T] of the V^T in lexicographic order (token ids as base-V digits)."""
    index = torch.arange(start, stop, dtype=torch.long)
    powers = vocab_size ** torch.arange(seq_len - 1, -1, -1, dtype=torch.long)
    return (index.unsqueeze(1) // powers) % vocab_size


def enumerate_log_probs(score: Callable[[Tensor], Tensor], vocab_size: int, seq_len: int) -> Tensor:
    """score(sentences [N, T]) -> log p [N], over every sentence in chunks: [V^T] float64 on the CPU."""
    total = vocab_size**seq_len
    return torch.cat(
        [
            score(all_sentences(vocab_size, seq_len, s, min(s + CHUNK, total))).double().cpu()
            for s in range(0, total, CHUNK)
        ]
    )


@torch.no_grad()
def generator_log_probs(generator: SequenceGenerator, decoding: Decoding, label: int | None = None) -> Tensor:
    """log p_G(x) [V^T] of every sentence under ``decoding`` (of class ``label`` for a conditional generator)."""
    device = generator.device

    def score(sentences: Tensor) -> Tensor:
        sentences = sentences.to(device)
        labels = None if label is None else torch.full((len(sentences),), label, device=device, dtype=torch.long)
        logits = generator.logits(sentences, labels).double()  # [N, T, V]
        steps = decoding.log_probabilities(logits).gather(-1, sentences.unsqueeze(-1)).squeeze(-1)
        return steps.sum(dim=1)

    return enumerate_log_probs(score, generator.vocab_size, generator.seq_len)


@functools.lru_cache(maxsize=2)
def oracle_log_probs(oracle: OracleLSTM) -> Tensor:
    """log p_oracle(x) [V^T] of every sentence; kept for the next evaluation (an oracle's weights never change)."""
    return enumerate_log_probs(oracle.log_probs, oracle.config.vocab_size, oracle.config.seq_len)


def divergences(log_p: Tensor, log_q: Tensor, seq_len: int) -> dict[str, float]:
    """Forward KL(p || q), reverse KL(q || p) and q's entropy (nats per token) and total variation, of the
    oracle's log p [S] and the generator's log q [S] over the same S sentences."""
    p, q = log_p.exp(), log_q.exp()
    forward = (p * (log_p - log_q)).where(p > 0, 0.0).sum().item()  # inf where p > 0 = q: not finite
    reverse = (q * (log_q - log_p)).where(q > 0, 0.0).sum().item()
    entropy = -(q * log_q).where(q > 0, 0.0).sum().item()
    return {
        "exact_forward_kl": forward / seq_len,
        "exact_reverse_kl": reverse / seq_len,
        "exact_tv": 0.5 * (p - q).abs().sum().item(),
        "exact_entropy": entropy / seq_len,
        "oracle_entropy": -(p * log_p).where(p > 0, 0.0).sum().item() / seq_len,
    }


def exact_report(
    generator: SequenceGenerator, oracle: OracleLSTM, decoding: Decoding, label: int | None = None
) -> dict[str, float]:
    """:func:`divergences` of the generator under ``decoding`` against the oracle."""
    return divergences(oracle_log_probs(oracle), generator_log_probs(generator, decoding, label), generator.seq_len)
