"""Tokenisation and the vocabulary (a ``PreTrainedTokenizerFast`` saved with every run): words (``nltk``,
``whitespace``), characters (``char``), subwords trained on the training split (``bpe``), or a tokenizer of your
own (``data.tokenizer``), and how the text metrics split sentences under each.

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

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from relgan.errors import CheckpointError

EOS, UNK, BOS = "<eos>", "<unk>", "<bos>"
SPECIAL_TOKENS = (EOS, UNK, BOS)


@functools.cache
def _nltk() -> Callable[[str], list[str]]:
    """NLTKWordTokenizer's split; ``import nltk`` takes a second or two (scikit-learn, pandas), so only runs that
    split words with it pay that."""
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer().tokenize


def split_words(text: str, mode: str) -> list[str]:
    """``nltk``: lower-case + NLTKWordTokenizer (RelGAN's convention, no downloaded data); ``whitespace``: split;
    ``char``: the characters, runs of white space as one " " token; ``bpe`` (and a tokenizer of your own): the
    words between spaces, which the subword tokenizer splits further."""
    if mode == "nltk":
        return _nltk()(text.lower())
    if mode in ("whitespace", "bpe"):
        return text.split()
    if mode == "char":
        return list(" ".join(text.split()))
    raise ValueError(f"unknown tokenization mode {mode!r}")


def model_text(tokens: Sequence[str], mode: str) -> str:
    """The string the vocabulary's tokenizer reads for a sentence's ``tokens`` (split_words's output)."""
    return "".join(tokens) if mode == "char" else " ".join(tokens)


def reference_words(text: str) -> list[str]:
    """Tokens of a BLEU reference or hypothesis as the official metric sees them (no lower-casing)."""
    return _nltk()(text)


def metric_words(tokenization: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Callable[[str], list[str]]:
    """How BLEU, Self-BLEU and the diversity metrics split a sentence: ``nltk``, NLTKWordTokenizer without
    lower-casing (the official metric's words); ``whitespace``, on spaces; ``char``, the characters without white
    space (CJK-aware: a Chinese sentence is its characters); ``bpe`` or a tokenizer directory, its pieces."""
    if tokenization == "nltk":
        return reference_words
    if tokenization == "whitespace":
        return str.split
    if tokenization == "char":
        return lambda text: [c for c in text if not c.isspace()]
    if tokenizer is None:
        raise ValueError(f"tokenization {tokenization!r} splits with its tokenizer: pass it")
    return tokenizer.tokenize


def split_identity(tokenization: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """What a signature's ``tok:`` field says of a split: its name (nltk, whitespace, char), or, where a tokenizer
    cuts the pieces (bpe, a tokenizer of your own), a hash of that tokenizer's vocabulary: two tokenizers never
    share it, and the same tokenizer reached two ways (a run's, or ``evaluate --tokenize`` its directory) has one."""
    if tokenization in ("nltk", "whitespace", "char"):
        return tokenization
    if tokenizer is None:
        raise ValueError(f"tokenization {tokenization!r} splits with its tokenizer: pass it")
    vocabulary = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return "vocab-" + hashlib.sha256(vocabulary.encode()).hexdigest()[:12]


def unknown_share(pieces: Iterable[Sequence[str]], unknown: str) -> float:
    """The share of ``unknown`` among all pieces (0 when there are none)."""
    total = hits = 0
    for sentence in pieces:
        total += len(sentence)
        hits += sum(piece == unknown for piece in sentence)
    return hits / total if total else 0.0


def decoded_words(tokenization: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Callable[[str], list[str]]:
    """How a decoded sentence splits into the units of the n-gram metrics: decoded words are joined by spaces
    already; characters and pieces are split as :func:`metric_words` splits them."""
    return str.split if tokenization in ("nltk", "whitespace") else metric_words(tokenization, tokenizer)


def _wrap(vocab: dict[str, int], with_specials: bool) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _specials(core) if with_specials else PreTrainedTokenizerFast(tokenizer_object=core)


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


def build_char_tokenizer(
    sentences: Iterable[Sequence[str]], min_frequency: int = 1, max_size: int | None = None
) -> PreTrainedTokenizerFast:
    """Character vocabulary of the training sentences (lists of characters, " " among them), specials first; it
    splits text into characters and decodes by joining them (no spaces added between CJK characters)."""
    vocab = build_word_tokenizer(sentences, min_frequency, max_size).get_vocab()
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return _specials(core)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """Subwords (BPE) trained on the training sentences, SentencePiece-style: white space becomes part of the
    pieces, so any language works and decoding restores the text. Specials first (ids 0, 1, 2)."""
    core = Tokenizer(models.BPE(unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    core.train_from_iterator(texts, trainer)
    return _specials(core)


def _specials(core: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=EOS, unk_token=UNK, bos_token=BOS)


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


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], seq_len: int | None = None) -> tuple[Tensor, int]:
    """Sentences (as the tokenizer reads them: :func:`model_text`) -> ids [N, T]: each sentence's tokens, then
    <eos> up to T = ``seq_len`` (None = the longest sentence in tokens), longer ones truncated; also returns how
    many were truncated."""
    rows = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"] if texts else []
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
