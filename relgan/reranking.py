"""Discriminator-reranked MLE: the baseline that asks whether a discriminator's signal helps without adversarial
training. A discriminator is trained on real sentences against the MLE generator's samples; M samples are drawn
from the generator and resampled in proportion to exp(alpha d(x)), d the discriminator's logit (sampling-
importance-resampling). alpha = 0 is plain MLE sampling.

As M grows the resampled sentences follow q_alpha(x) = p_G(x) exp(alpha d(x)) / Z. A discriminator that is
Bayes-optimal for real against generated data has d(x) = log p_data(x) - log p_G(x), so q_1 is the data
distribution itself: on the exact benchmark d can be that true log-ratio, and :func:`reranked_log_probs` gives
q_alpha of every sentence exactly (:func:`exact_reranked`). Elsewhere :func:`sir_resampled` draws the candidates
and resamples them; the resampled sentences then carry every metric computed from samples, but no NLL_test: they
are no one generator's samples, and q_alpha's normaliser is not estimated.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from relgan.algorithms.reinforce import sentence_logits
from relgan.decoding import Decoding
from relgan.errors import CheckpointError
from relgan.io_utils import atomic_write_bytes
from relgan.metrics.exact import all_sentences, divergences, generator_log_probs
from relgan.metrics.registry import sign
from relgan.models import Discriminator, SequenceGenerator
from relgan.runtime import derive_seed
from relgan.sampling import sample_ids


def resampling_weights(scores: Tensor, alpha: float) -> Tensor:
    """The probability [M] of picking each of M candidates with scores d [M]: softmax(alpha d)."""
    return torch.softmax(alpha * scores.double(), dim=0)


def resample(scores: Tensor, alpha: float, count: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices [count] of candidates drawn with replacement, each in proportion to exp(alpha d)."""
    return torch.multinomial(resampling_weights(scores, alpha), count, replacement=True, generator=generator)


def reranked_log_probs(log_q: Tensor, scores: Tensor, alpha: float) -> Tensor:
    """log q_alpha(x) [S] of S sentences (all of them: the limit of many candidates) from the generator's log p_G
    [S] and their scores d [S]: log p_G + alpha d, normalised over the S sentences."""
    logits = log_q.double() + alpha * scores.double()
    return logits - torch.logsumexp(logits, dim=0)


def train_reranker(
    discriminator: Discriminator,
    generator: SequenceGenerator,
    real: Tensor,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    checkpoint: Path | None = None,
    every: int = 100,
) -> list[float]:
    """Train ``discriminator`` ``steps`` Adam steps (the standard GAN loss) to tell real sentences [N, T] from the
    generator's fresh samples, the generator fixed; returns the losses. Leaves it in eval mode. With
    ``checkpoint``, the training state is written there (atomically) every ``every`` steps and at the end, and a
    stopped training continues from it, ending as the uninterrupted one would."""
    draws = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=lr)
    settings: dict[str, Any] = {}
    losses: list[float] = []
    if checkpoint is not None:
        # what a saved state depends on: one of another generator or other data must not be continued
        settings = {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "trained_against": _fingerprint([real, *generator.state_dict().values()]),
        }
        losses = _resume(checkpoint, settings, discriminator, optimiser, draws)
    labels = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    discriminator.train()
    for step in range(len(losses), steps):
        with torch.no_grad():
            fake = generator.sample_tokens(batch_size, generator=draws)
        rows = torch.randint(len(real), (batch_size,), generator=draws)
        (logits,) = discriminator(torch.cat([real[rows], fake]))
        loss = F.binary_cross_entropy_with_logits(logits.view(2 * batch_size, -1).mean(dim=1), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if checkpoint is not None and ((step + 1) % every == 0 or step + 1 == steps):
            _save(checkpoint, settings, discriminator, optimiser, draws, losses)
    discriminator.eval()
    return losses


def _fingerprint(tensors: list[Tensor]) -> str:
    """A SHA-256 of the tensors' bytes, in order (as bytes, so that any dtype, bfloat16 too, can be hashed)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _save(
    path: Path,
    settings: dict[str, Any],
    discriminator: Discriminator,
    optimiser: torch.optim.Optimizer,
    draws: torch.Generator,
    losses: list[float],
) -> None:
    # the global RNG too: the discriminator's dropout draws from it
    state = {
        "settings": settings,
        "discriminator": discriminator.state_dict(),
        "optimiser": optimiser.state_dict(),
        "draws": draws.get_state(),
        "global_rng": torch.get_rng_state(),
        "losses": losses,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _resume(
    path: Path,
    settings: dict[str, Any],
    discriminator: Discriminator,
    optimiser: torch.optim.Optimizer,
    draws: torch.Generator,
) -> list[float]:
    """The losses so far of the training saved at ``path`` (none if there is no file), its state restored."""
    if not path.exists():
        return []
    try:
        state = torch.load(path, weights_only=True)
        differing = sorted(key for key in settings if state["settings"].get(key) != settings[key])
        if not differing:
            discriminator.load_state_dict(state["discriminator"])
            optimiser.load_state_dict(state["optimiser"])
    except (
        OSError,
        EOFError,
        AttributeError,
        KeyError,
        RuntimeError,
        TypeError,
        ValueError,
        pickle.UnpicklingError,
    ) as error:
        raise CheckpointError(
            f"{path}: not a reranker checkpoint of this discriminator ({error}); delete it to train again"
        ) from None
    if differing:
        raise CheckpointError(
            f"{path}: a reranker trained with another {', '.join(differing)}; delete it to train this one"
        )
    draws.set_state(state["draws"])
    torch.set_rng_state(state["global_rng"])
    return list(state["losses"])


@torch.no_grad()
def scores_of(discriminator: Discriminator, sentences: Tensor, batch_size: int = 65536) -> Tensor:
    """d(x) [N]: the discriminator's logit of each sentence [N, T] (the mean over its representations)."""
    return torch.cat([sentence_logits(discriminator, chunk, None) for chunk in sentences.split(batch_size)])


def exact_reranked(
    generator: SequenceGenerator,
    discriminator: Discriminator,
    oracle_log_p: Tensor,
    real: Tensor,
    vocab_size: int,
    alphas: tuple[float, ...],
    steps: int,
    seed: int,
) -> dict[float, dict[str, float]]:
    """On an enumerable benchmark: train ``discriminator`` as the reranker of ``generator`` on the real sentences
    [N, T] (:func:`train_reranker`), then the exact divergences (relgan/metrics/exact.py) from the oracle's log
    probabilities [S] of q_alpha, the limit of many candidates, for each alpha."""
    seq_len = real.shape[1]
    log_q = generator_log_probs(generator, Decoding())
    train_reranker(discriminator, generator, real, steps, seed=seed)
    scores = scores_of(discriminator, all_sentences(vocab_size, seq_len, 0, len(log_q)))
    return {alpha: divergences(oracle_log_p, reranked_log_probs(log_q, scores, alpha), seq_len) for alpha in alphas}


def sir_resampled(
    generator: SequenceGenerator,
    discriminator: Discriminator,
    real: Tensor,
    alphas: tuple[float, ...],
    candidates: int,
    count: int,
    steps: int,
    seed: int,
    batch_size: int = 256,
    checkpoint: Path | None = None,
) -> dict[float, Tensor]:
    """On any benchmark: train ``discriminator`` as the reranker of ``generator`` on the real sentences [N, T]
    (:func:`train_reranker`, resumable from ``checkpoint``), draw ``candidates`` sentences from the generator and,
    for each alpha, resample ``count`` of them [count, T] in proportion to exp(alpha d)
    (sampling-importance-resampling)."""
    train_reranker(discriminator, generator, real, steps, seed=seed, checkpoint=checkpoint)
    pool = sample_ids(generator, candidates, batch_size, derive_seed(seed, "reranking candidates"))
    scores = scores_of(discriminator, pool)
    draws = torch.Generator().manual_seed(derive_seed(seed, "reranking resampling"))
    return {alpha: pool[resample(scores, alpha, count, draws)] for alpha in alphas}


def reranking_signature(steps: int, candidates: int | None) -> str:
    """How reranked points were made: the reranker's training steps and ``candidates`` drawn per resampled set
    (SIR), or None for the exact limit of many candidates."""
    how = ["sir", f"candidates:{candidates}"] if candidates is not None else ["exact-limit"]
    return sign("reranking", *how, f"reranker-steps:{steps}")
