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
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

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
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=EOS, unk_token=UNK, bos_token=BOS)


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


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """Reload a saved tokenizer with ``AutoTokenizer`` (offline)."""
    if not (Path(directory) / "tokenizer.json").is_file():
        raise CheckpointError(f"{directory}: no tokenizer.json; is this a relgan run directory?")
    return AutoTokenizer.from_pretrained(str(directory))


def encode(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], seq_len: int | None = None
) -> tuple[Tensor, int]:
    """Word lists -> ids [N, T]: each sentence's tokens, then <eos> up to T = ``seq_len`` (None = the longest
    sentence in tokens), longer ones truncated; also returns how many were truncated."""
    rows = (
        tokenizer([" ".join(words) for words in sentences], add_special_tokens=False, return_attention_mask=False)[
            "input_ids"
        ]
        if sentences
        else []
    )
    length = seq_len if seq_len is not None else max(map(len, rows), default=0)
    ids = torch.full((len(rows), length), tokenizer.eos_token_id, dtype=torch.long)
    for row, tokens in zip(ids, rows, strict=True):
        kept = tokens[:length]
        row[: len(kept)] = torch.tensor(kept, dtype=torch.long)
    return ids, sum(len(tokens) > length for tokens in rows)


def decode(tokenizer: PreTrainedTokenizerBase, ids: Tensor, eos_id: int | None) -> list[str]:
    """ids [N, T] -> sentences: cut at the first <eos> (end of sentence), drop the padding after it.

    Whitespace is normalised to single spaces: a subword tokenizer can decode a newline inside a sentence,
    and samples are written one sentence per line.
    """
    rows = ids.tolist()
    if eos_id is not None:
        rows = [row[: row.index(eos_id)] if eos_id in row else row for row in rows]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [" ".join(text.split()) for text in texts]
