"""Negative log-likelihoods of the generator on data, in the RelGAN convention and without padding."""

from __future__ import annotations

import torch
from torch import Tensor

from relgan.decoding import PLAIN, Decoding
from relgan.models import SequenceGenerator
from relgan.sampling import class_arguments


@torch.no_grad()
def nll_gen(
    generator: SequenceGenerator, ids: Tensor, batch_size: int, chunk_size: int | None = None, label: int | None = None
) -> float:
    """RelGAN's NLL_gen: mean per-token NLL over full batches of ``batch_size`` only, padding included (given
    class ``label`` for a conditional generator).

    With equal batch sizes the official mean of batch means equals this global mean, so the sentences
    are processed in chunks of ``chunk_size`` (default ``batch_size``). A corpus smaller than one batch
    is used whole.
    """
    device = next(generator.parameters()).device
    usable = ids[: max(len(ids) // batch_size, 1) * batch_size]
    total = torch.zeros((), dtype=torch.float64, device=device)
    for chunk in usable.split(chunk_size or batch_size):
        nll = generator.token_nll(chunk.to(device), **class_arguments(label, len(chunk), device))
        total += nll.sum(dtype=torch.float64)
    return (total / usable.numel()).item()


@torch.no_grad()
def nll_test(
    generator: SequenceGenerator,
    ids: Tensor,
    eos_id: int | None,
    batch_size: int,
    decoding: Decoding = PLAIN,
    label: int | None = None,
) -> float:
    """Mean per-token NLL over every sentence's words and its end of sentence, padding excluded (given class
    ``label`` for a conditional generator).

    With ``eos_id=None`` (fixed-length sequences) every position counts. The tokens are scored under the
    distribution ``decoding`` samples from: a truncating rule gives a test token it leaves out probability 0, and
    the NLL is then infinite.
    """
    device = next(generator.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for batch in ids.split(batch_size):
        batch = batch.to(device)
        labels = class_arguments(label, len(batch), device)
        if decoding.truncates:  # token_nll (and its fast path) scores softmax(o / T) only
            log_probs = decoding.log_probabilities(generator.logits(batch, **labels))
            nll = -log_probs.gather(-1, batch.unsqueeze(-1)).squeeze(-1)
        else:
            nll = generator.token_nll(batch, decoding.temperature, **labels)
        if eos_id is None:
            mask = torch.ones_like(nll, dtype=torch.bool)
        else:
            # a position counts while no <eos> came before it (the first <eos> itself counts)
            eos_before = (batch == eos_id).long().cumsum(dim=1) - (batch == eos_id).long()
            mask = eos_before == 0
        total += nll[mask].sum(dtype=torch.float64)
        count += mask.sum()
        # one test token the rule leaves out makes the mean infinite: the remaining batches cannot change it (on
        # real text a top-k or top-p rule nearly always leaves one out, and sorting every vocabulary is the cost)
        if decoding.truncates and torch.isinf(total):
            break
    return (total / count).item()
