"""Word tokenisation and the word-level vocabulary (a ``PreTrainedTokenizerFast`` saved with every run).

Conventions (RelGAN maps "end of sentence" and "padding" to one id; so do we):

* ``<eos>`` (id 0) ends a sentence and fills the rest of the fixed-length row. The first ``<eos>``
  is the end of the sentence, later ones are padding. A sentence of exactly T words has none.
* ``<unk>`` (id 1) replaces words outside the vocabulary.
* ``<bos>`` (id 2) is only ever an input: the generator's first step reads it. The official code
  feeds the embedding of vocabulary word 0 instead, which gives that word a second job.

The synthetic benchmark's tokenizer is the identity over "0" ... "V-1" with no special tokens, so that
its vocabulary size equals the oracle's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from nltk.tokenize import NLTKWordTokenizer
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from relgan.errors import CheckpointError

EOS, UNK, BOS = "<eos>", "<unk>", "<bos>"
SPECIAL_TOKENS = (EOS, UNK, BOS)

_NLTK = NLTKWordTokenizer()


def split_words(text: str, mode: str) -> list[str]:
    """``nltk``: lower-case + NLTKWordTokenizer (RelGAN's convention, no downloaded data); ``whitespace``: split."""
    if mode == "nltk":
        return _NLTK.tokenize(text.lower())
    if mode == "whitespace":
        return text.split()
    raise ValueError(f"unknown tokenization mode {mode!r}")


def reference_words(text: str) -> list[str]:
    """Tokens of a BLEU reference or hypothesis as the official metric sees them (no lower-casing)."""
    return _NLTK.tokenize(text)


def _wrap(vocab: dict[str, int], with_specials: bool) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if not with_specials:
        return PreTrainedTokenizerFast(tokenizer_object=core)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, pad_token=EOS, unk_token=UNK, bos_token=BOS
    )


def build_word_tokenizer(
    sentences: Iterable[Sequence[str]], min_frequency: int = 1, max_size: int | None = None
) -> PreTrainedTokenizerFast:
    """Vocabulary of the training sentences: specials first, then words by descending count (ties by word)."""
    counts = Counter(word for sentence in sentences for word in sentence)
    for special in SPECIAL_TOKENS:
        counts.pop(special, None)
    words = sorted((w for w, c in counts.items() if c >= min_frequency), key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[:max_size]
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *words])}
    return _wrap(vocab, with_specials=True)


def build_identity_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Tokenizer of the synthetic benchmark: token "i" has id i."""
    return _wrap({str(i): i for i in range(vocab_size)}, with_specials=False)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Reload a saved tokenizer with ``AutoTokenizer`` (offline)."""
    if not (Path(directory) / "tokenizer.json").is_file():
        raise CheckpointError(f"{directory}: no tokenizer.json; is this a relgan run directory?")
    return AutoTokenizer.from_pretrained(str(directory))


def encode(tokenizer: PreTrainedTokenizerFast, sentences: Sequence[Sequence[str]], seq_len: int) -> tuple[Tensor, int]:
    """Word lists -> ids [N, seq_len], padded with <eos> and truncated; also returns how many were truncated."""
    if not sentences:
        return torch.empty(0, seq_len, dtype=torch.long), 0
    truncated = sum(len(words) > seq_len for words in sentences)
    batch = tokenizer(
        [" ".join(words) for words in sentences],
        padding="max_length",
        truncation=True,
        max_length=seq_len,
        return_attention_mask=False,
    )
    return torch.tensor(batch["input_ids"], dtype=torch.long), truncated


def decode(tokenizer: PreTrainedTokenizerFast, ids: Tensor, eos_id: int | None) -> list[str]:
    """ids [N, T] -> sentences: cut at the first <eos> (end of sentence), drop the padding after it."""
    rows = ids.tolist()
    if eos_id is not None:
        rows = [row[: row.index(eos_id)] if eos_id in row else row for row in rows]
    return tokenizer.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=False)
