"""Corpora as fixed-length id tensors: text files or Hugging Face datasets through ``datasets``, or the oracle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from transformers import PreTrainedTokenizerBase

from relgan.config import DataConfig
from relgan.errors import CheckpointError, DataError
from relgan.io_utils import read_text_lines
from relgan.oracle import OracleLSTM, build_oracle_corpus, load_oracle_corpus, save_oracle_corpus
from relgan.tokenization import (
    build_identity_tokenizer,
    build_word_tokenizer,
    decode,
    encode,
    load_tokenizer,
    save_tokenizer,
    split_words,
)

logger = logging.getLogger("relgan")

TOKENIZER_DIR = "tokenizer"
ORACLE_FILE = "oracle.safetensors"


@dataclass
class Corpus:
    """Everything training and evaluation need to know about the data."""

    tokenizer: PreTrainedTokenizerBase
    train_ids: Tensor  # [N, T] int64
    test_ids: Tensor  # [M, T] int64
    start_id: int  # generator input at the first step
    eos_id: int | None  # end of sentence and padding; None for the oracle (fixed-length sequences)
    train_text: list[str] | None = None  # raw non-blank lines (real data only)
    test_text: list[str] | None = None
    oracle: OracleLSTM | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def seq_len(self) -> int:
        return self.train_ids.shape[1]

    def decode(self, ids: Tensor) -> list[str]:
        """ids [N, T] -> sentences (cut at the end of sentence, padding dropped)."""
        return decode(self.tokenizer, ids, self.eos_id)


def load_corpus(config: DataConfig, saved: Path | None = None,
                tokenizer: PreTrainedTokenizerBase | None = None) -> Corpus:
    """Build the corpus; tokenizer and oracle are reused from the run directory ``saved`` when present there.

    ``tokenizer`` (a pretrained model's) replaces the word vocabulary built from the training split.
    """
    if config.source == "oracle":
        return _oracle_corpus(config, saved)
    return _text_corpus(config, saved, tokenizer)


def save_corpus_artifacts(corpus: Corpus, run_dir: Path) -> None:
    """Write the tokenizer (and the oracle with its samples) into the run directory."""
    save_tokenizer(corpus.tokenizer, run_dir / TOKENIZER_DIR)
    if corpus.oracle is not None and not (run_dir / ORACLE_FILE).exists():
        save_oracle_corpus(run_dir / ORACLE_FILE, corpus.oracle, corpus.train_ids, corpus.test_ids)


def _oracle_corpus(config: DataConfig, saved: Path | None) -> Corpus:
    stored = saved / ORACLE_FILE if saved is not None else None
    if stored is not None and stored.exists():
        oracle, train, test = load_oracle_corpus(stored, config.oracle)
    else:
        oracle, train, test = build_oracle_corpus(config.oracle)
    return Corpus(
        tokenizer=build_identity_tokenizer(config.oracle.vocab_size),
        train_ids=train,
        test_ids=test,
        start_id=config.oracle.start_token,
        eos_id=None,
        oracle=oracle,
    )


def _text_corpus(config: DataConfig, saved: Path | None, tokenizer: PreTrainedTokenizerBase | None) -> Corpus:
    (train_text, train_words), (test_text, test_words) = read_splits(config)
    if tokenizer is None:
        tokenizer = build_word_tokenizer(train_words, config.min_frequency, config.max_vocab_size)
    if saved is not None and (saved / TOKENIZER_DIR).exists():
        stored = load_tokenizer(saved / TOKENIZER_DIR)
        if stored.get_vocab() != tokenizer.get_vocab():
            raise CheckpointError(
                f"{saved / TOKENIZER_DIR}: the run was trained with another vocabulary ({len(stored)} tokens) "
                f"than the data gives now ({len(tokenizer)}); use the run's original data or a new run.name"
            )
        tokenizer = stored
    train_ids, train_cut = encode(tokenizer, train_words, config.seq_len)
    seq_len = train_ids.shape[1]
    test_ids, test_cut = encode(tokenizer, test_words, seq_len)
    for split, cut, total in (("training", train_cut, len(train_words)), ("test", test_cut, len(test_words))):
        if cut == total:
            logger.warning("all %d %s sentences are longer than seq_len = %d and were truncated: NLL_test and BLEU "
                           "then measure cut sentences, not the %s data; raise data.seq_len", cut, split, seq_len,
                           split)
        elif cut:
            logger.warning("%d %s sentences are longer than seq_len = %d and were truncated", cut, split, seq_len)
    return Corpus(
        tokenizer=tokenizer,
        train_ids=train_ids,
        test_ids=test_ids,
        start_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        eos_id=tokenizer.eos_token_id,
        train_text=train_text,
        test_text=test_text,
    )


def _tokenize_batch(batch: dict[str, list], column: str, mode: str) -> dict[str, list]:
    return {"words": [split_words(text or "", mode) for text in batch[column]]}


Split = tuple[list[str], list[list[str]]]


def read_splits(config: DataConfig) -> tuple[Split, Split]:
    """(raw lines, word lists) of the train and test splits, blank lines skipped and counted."""
    from datasets import load_dataset

    if config.source == "files":
        names = {"train": "data.train_file", "test": "data.test_file"}
        files = {"train": config.train_file, "test": config.test_file}
        for role, path in files.items():
            read_text_lines(path, names[role])  # one-line errors before datasets sees the file
        dataset = load_dataset("text", data_files=files)
        column, splits = "text", {"train": "train", "test": "test"}
    else:
        names = {"train": f"{config.dataset}[{config.train_split}]", "test": f"{config.dataset}[{config.test_split}]"}
        dataset = _load_hub_dataset(config)
        column, splits = config.text_column, {"train": config.train_split, "test": config.test_split}
    result = []
    for role in ("train", "test"):
        part = dataset[splits[role]]
        tokenized = part.map(
            _tokenize_batch, batched=True, fn_kwargs={"column": column, "mode": config.tokenization},
            desc=f"tokenizing {role}",
        )
        texts, words = [], []
        for text, sentence in zip(tokenized[column], tokenized["words"]):
            if sentence:
                texts.append(text.strip())
                words.append(sentence)
        blank = len(tokenized) - len(words)
        if blank:
            logger.warning("%s: skipped %d blank lines", names[role], blank)
        if not words:
            raise DataError(f"{names[role]}: no non-blank sentences")
        result.append((texts, words))
    return result[0], result[1]


def _load_hub_dataset(config: DataConfig):
    from datasets import load_dataset

    try:
        dataset = load_dataset(config.dataset, config.dataset_config)
    except Exception as exc:  # network, missing dataset and bad config all surface differently
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"data.dataset: cannot load '{config.dataset}' from the Hugging Face Hub ({reason}); "
            "to use local files set data.source=files data.train_file=PATH data.test_file=PATH"
        ) from None
    for split in (config.train_split, config.test_split):
        if split not in dataset:
            raise DataError(
                f"data.dataset: '{config.dataset}' has no split '{split}'; available: {', '.join(dataset)}"
            )
    columns = dataset[config.train_split].column_names
    if config.text_column not in columns:
        raise DataError(
            f"data.text_column: '{config.dataset}' has no column '{config.text_column}'; "
            f"available: {', '.join(columns)}"
        )
    return dataset
