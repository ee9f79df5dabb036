"""Corpora as fixed-length id tensors: text files or Hugging Face datasets through ``datasets``, or the oracle."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from relgan.config import DataConfig
from relgan.errors import CheckpointError, DataError
from relgan.io_utils import atomic_write_json, read_text_lines
from relgan.oracle import OracleLSTM, build_oracle_corpus, load_oracle_corpus, save_oracle_corpus
from relgan.pretrained import load_text_tokenizer
from relgan.tokenization import (
    SPECIAL_TOKENS,
    build_char_tokenizer,
    build_identity_tokenizer,
    build_word_tokenizer,
    decode,
    encode,
    load_tokenizer,
    metric_words,
    model_text,
    save_tokenizer,
    split_words,
    train_bpe_tokenizer,
)

logger = logging.getLogger("relgan")

TOKENIZER_DIR = "tokenizer"
BPE_VOCAB_SIZE = 8000  # data.tokenization=bpe with data.max_vocab_size null
LABELS_FILE = "labels.json"
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
    label_names: list[str] | None = None  # class names in id order (labelled data only)
    train_labels: Tensor | None = None  # [N] int64 class ids
    test_labels: Tensor | None = None  # [M]
    tokenization: str = "nltk"  # how the text was split: data.tokenization, or "tokenizer" (data.tokenizer)
    valid_ids: Tensor | None = None  # [K, T]: training sentences held out for model selection (data.validation_size)
    valid_text: list[str] | None = None
    # [N + K, T]: the training split before valid_ids were taken from it (what a run directory keeps of an oracle's
    # samples, so that a resumed run holds out the same sentences)
    unsplit_train_ids: Tensor | None = None

    def metric_words(self) -> Callable[[str], list[str]]:
        """How BLEU, Self-BLEU and the diversity metrics split a sentence of this corpus."""
        return metric_words(self.tokenization, self.tokenizer)

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 for unlabelled data."""
        return len(self.label_names) if self.label_names is not None else 0

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def seq_len(self) -> int:
        return self.train_ids.shape[1]

    def decode(self, ids: Tensor) -> list[str]:
        """ids [N, T] -> sentences (cut at the end of sentence, padding dropped)."""
        return decode(self.tokenizer, ids, self.eos_id)

    def of_class(self, index: int) -> Corpus:
        """The sentences of class ``index`` as an unlabelled corpus (same vocabulary and length)."""
        if self.train_labels is None or self.test_labels is None or self.train_text is None or self.test_text is None:
            raise ValueError("of_class needs a corpus of labelled text")
        train, test = self.train_labels == index, self.test_labels == index
        return dataclasses.replace(
            self,
            train_ids=self.train_ids[train],
            test_ids=self.test_ids[test],
            train_text=[text for text, keep in zip(self.train_text, train.tolist(), strict=True) if keep],
            test_text=[text for text, keep in zip(self.test_text, test.tolist(), strict=True) if keep],
            label_names=None,
            train_labels=None,
            test_labels=None,
        )


def load_corpus(
    config: DataConfig, saved: Path | None = None, tokenizer: PreTrainedTokenizerBase | None = None
) -> Corpus:
    """Build the corpus; tokenizer and oracle are reused from the run directory ``saved`` when present there.

    ``tokenizer`` (a pretrained model's) replaces the word vocabulary built from the training split.
    """
    corpus = _oracle_corpus(config, saved) if config.source == "oracle" else _text_corpus(config, saved, tokenizer)
    return _hold_out(corpus, config.validation_size, config.validation_seed)


def _hold_out(corpus: Corpus, size: int, seed: int) -> Corpus:
    """``size`` training sentences, chosen by ``seed``, set aside for model selection (and no longer trained on)."""
    if size == 0:
        return corpus
    total = len(corpus.train_ids)
    if size >= total:
        raise DataError(f"data.validation_size = {size} leaves no training sentences ({total} in all)")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    held, kept = order[:size].sort().values, order[size:].sort().values
    text = corpus.train_text
    return dataclasses.replace(
        corpus,
        train_ids=corpus.train_ids[kept],
        valid_ids=corpus.train_ids[held],
        unsplit_train_ids=corpus.train_ids,
        train_text=None if text is None else [text[i] for i in kept.tolist()],
        valid_text=None if text is None else [text[i] for i in held.tolist()],
    )


def save_corpus_artifacts(corpus: Corpus, run_dir: Path) -> None:
    """Write the tokenizer, the class names (labelled data) and the oracle with its samples into the run
    directory."""
    save_tokenizer(corpus.tokenizer, run_dir / TOKENIZER_DIR)
    if corpus.label_names is not None:
        save_labels(corpus.label_names, run_dir)
    if corpus.oracle is not None and not (run_dir / ORACLE_FILE).exists():
        train = corpus.unsplit_train_ids if corpus.unsplit_train_ids is not None else corpus.train_ids
        save_oracle_corpus(run_dir / ORACLE_FILE, corpus.oracle, train, corpus.test_ids)


def save_labels(names: Sequence[str], directory: Path) -> None:
    """Class names in id order: ``directory/labels.json``."""
    atomic_write_json(directory / LABELS_FILE, {"labels": list(names)})


def load_labels(directory: Path) -> list[str] | None:
    """The class names saved in ``directory``; None where there are none (an unconditional run)."""
    path = directory / LABELS_FILE
    return json.loads(path.read_text())["labels"] if path.is_file() else None


def _oracle_corpus(config: DataConfig, saved: Path | None) -> Corpus:
    stored = saved / ORACLE_FILE if saved is not None else None
    if stored is not None and stored.exists():
        oracle, train, test = load_oracle_corpus(stored, config.oracle)
        if len(train) != config.oracle.num_train:
            raise DataError(
                f"{stored}: holds {len(train)} training sentences, not data.oracle.num_train = "
                f"{config.oracle.num_train}: an older relgan wrote it without the held-out sentences, so a resumed run "
                "would hold out sentences it had trained on; start a new run.name"
            )
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
    train, test = read_splits(config)
    tokenization = "tokenizer" if config.tokenizer is not None else config.tokenization
    if tokenizer is None:
        tokenizer = _tokenizer(config, train)
    if saved is not None and (saved / TOKENIZER_DIR).exists():
        stored = load_tokenizer(saved / TOKENIZER_DIR)
        if stored.get_vocab() != tokenizer.get_vocab():
            raise CheckpointError(
                f"{saved / TOKENIZER_DIR}: the run was trained with another vocabulary ({len(stored)} tokens) "
                f"than the data gives now ({len(tokenizer)}); use the run's original data or a new run.name"
            )
        tokenizer = stored
    mode = _split_mode(config)
    train_texts = [model_text(words, mode) for words in train.words]
    if config.seq_len is None:
        _warn_of_outliers(tokenizer, train_texts, train.lines, _where(config, "train"))
    train_ids, train_cut = encode(tokenizer, train_texts, config.seq_len)
    seq_len = train_ids.shape[1]
    test_ids, test_cut = encode(tokenizer, [model_text(words, mode) for words in test.words], seq_len)
    for split, cut, total in (("training", train_cut, len(train.words)), ("test", test_cut, len(test.words))):
        if cut == total:
            logger.warning(
                "all %d %s sentences are longer than seq_len = %d and were truncated: NLL_test and BLEU "
                "then measure cut sentences, not the %s data; raise data.seq_len",
                cut,
                split,
                seq_len,
                split,
            )
        elif cut:
            logger.warning("%d %s sentences are longer than seq_len = %d and were truncated", cut, split, seq_len)
    _warn_of_failed_splitting(train_ids, tokenizer, tokenization, _where(config, "train"))
    return Corpus(
        tokenizer=tokenizer,
        train_ids=train_ids,
        test_ids=test_ids,
        start_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        eos_id=tokenizer.eos_token_id,
        train_text=train.texts,
        test_text=test.texts,
        tokenization=tokenization,
        **_class_labels(config, train, test, saved),
    )


def _tokenizer(config: DataConfig, train: Split) -> PreTrainedTokenizerBase:
    """The vocabulary of the training split, as data.tokenization builds it, or data.tokenizer's. A vocabulary of
    the specials alone (data.min_frequency above every count) is an error: the run would learn <unk>."""
    if config.tokenizer is not None:
        return load_text_tokenizer(config.tokenizer)
    if config.tokenization == "char":
        tokenizer = build_char_tokenizer(train.words, config.min_frequency, config.max_vocab_size)
    elif config.tokenization == "bpe":
        size = config.max_vocab_size or BPE_VOCAB_SIZE
        tokenizer = train_bpe_tokenizer(train.texts, size, config.min_frequency)
        if len(tokenizer) > size:
            logger.warning(
                "data.max_vocab_size = %d is below the %d pieces bpe keeps (the specials and every character of the "
                "training split): the vocabulary has %d, with no merges; raise data.max_vocab_size for subwords",
                size,
                len(tokenizer),
                len(tokenizer),
            )
    else:
        tokenizer = build_word_tokenizer(train.words, config.min_frequency, config.max_vocab_size)
    if len(tokenizer) <= len(SPECIAL_TOKENS):
        raise DataError(
            f"data.min_frequency = {config.min_frequency} leaves no token of the training split in the vocabulary "
            "(the specials alone: every sentence would be <unk>); lower data.min_frequency"
        )
    return tokenizer


def _split_mode(config: DataConfig) -> str:
    """How lines are split before the vocabulary's tokenizer reads them (a tokenizer of your own: on spaces)."""
    return "whitespace" if config.tokenizer is not None else config.tokenization


def _where(config: DataConfig, role: str) -> str:
    if config.source == "files":
        return f"data.{role}_file"
    return f"{config.dataset}[{config.train_split if role == 'train' else config.test_split}]"


def _warn_of_outliers(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], lines: Sequence[int], where: str
) -> None:
    """Unless data.seq_len is set, T is the longest training sentence: say so when one line is far longer than
    the bulk (over 4 times the 99th percentile), which would size every batch."""
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    if len(lengths) < 2:
        return
    bulk = sorted(lengths)[min(len(lengths) - 1, int(0.99 * len(lengths)))]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] > 4 * max(bulk, 1):
        logger.warning(
            "%s line %d has %d tokens, over 4 times the 99th percentile (%d), and sets T for every batch; set "
            "data.seq_len (say %d) to cut the few long lines",
            where,
            lines[longest],
            lengths[longest],
            bulk,
            bulk,
        )


def _warn_of_failed_splitting(ids: Tensor, tokenizer: PreTrainedTokenizerBase, tokenization: str, where: str) -> None:
    """A tokenisation that plainly failed (a language without spaces split into words): most sentences one token,
    or about one vocabulary entry per sentence."""
    tokens = (ids != tokenizer.eos_token_id).sum(dim=1)
    single = (tokens <= 1).float().mean().item()
    if len(ids) >= 20 and (single > 0.5 or len(tokenizer) >= 0.9 * len(ids)):
        logger.warning(
            "%s: with data.tokenization=%s %.0f%% of the sentences are a single token and the vocabulary has %d "
            "entries for %d sentences: the text is hardly split (a language without spaces?); try "
            "data.tokenization=char or bpe",
            where,
            tokenization,
            100 * single,
            len(tokenizer),
            len(ids),
        )


def _class_labels(config: DataConfig, train: Split, test: Split, saved: Path | None) -> dict:
    """The training split's class names (sorted; a resumed run's must equal its saved ones) and the class ids of
    both splits; {} for unlabelled data."""
    if train.labels is None:
        return {}
    names = sorted(set(train.labels))
    stored = load_labels(saved) if saved is not None else None
    if saved is not None and stored is not None and stored != names:
        raise CheckpointError(
            f"{saved / LABELS_FILE}: the run was trained on the classes {', '.join(stored)} but the "
            f"data has {', '.join(names)}; use the run's original data or a new run.name"
        )
    where = "data.test_file" if config.source == "files" else f"{config.dataset}[{config.test_split}]"
    if test.labels is None:
        raise DataError(f"{where}: the test split has no labels, the training split has")
    test_labels = label_ids(names, test.labels, where)
    missing = [name for i, name in enumerate(names) if not (test_labels == i).any()]
    if missing:
        raise DataError(
            f"{where}: class {missing[0]!r} has no test sentences; per-class evaluation needs them as "
            "references: add some, or drop the class from the training split"
        )
    return {
        "label_names": names,
        "train_labels": label_ids(names, train.labels, "the training split"),
        "test_labels": test_labels,
    }


def _tokenize_batch(
    batch: dict[str, list], indices: list[int], column: str, mode: str, tab_labels: bool, where: str
) -> dict[str, list]:
    """Words of each line; with ``tab_labels`` the line is ``label<TAB>sentence`` and the label is split off."""
    texts: list[str] = []
    labels: list[str] = []
    for index, line in zip(indices, batch[column], strict=True):
        line = (line or "").lstrip("\ufeff")  # a UTF-8 byte-order mark is no part of the first word (or label)
        if tab_labels and line.strip():
            label, tab, line = line.partition("\t")
            if not tab or not label.strip():
                raise DataError(
                    f"{where} line {index + 1}: no label; with data.labelled=true every line is `label<TAB>sentence`"
                )
            labels.append(label.strip())
        texts.append(line)
    result: dict[str, list] = {"sentence": texts, "words": [split_words(text, mode) for text in texts]}
    if tab_labels:
        in_order = iter(labels)  # blank lines carry no label
        result["class"] = [next(in_order) if line.strip() else "" for line in batch[column]]
    return result


@dataclass
class Split:
    """One split's non-blank sentences: raw lines, their words, and their class names (labelled data)."""

    texts: list[str]
    words: list[list[str]]
    labels: list[str] | None
    lines: list[int]  # line numbers (1-based; rows of a Hugging Face split) of the sentences


def read_splits(config: DataConfig) -> tuple[Split, Split]:
    """The train and test splits, blank lines skipped and counted."""
    from datasets import load_dataset

    if config.source == "files":
        names = {"train": "data.train_file", "test": "data.test_file"}
        if config.train_file is None or config.test_file is None:
            raise DataError("data.source=files needs data.train_file and data.test_file")
        files = {"train": config.train_file, "test": config.test_file}
        for role, path in files.items():
            read_text_lines(path, names[role])  # one-line errors before datasets sees the file
        dataset = load_dataset("text", data_files=files)
        column, splits = "text", {"train": "train", "test": "test"}
    else:
        names = {"train": f"{config.dataset}[{config.train_split}]", "test": f"{config.dataset}[{config.test_split}]"}
        dataset = _load_hub_dataset(config)
        column, splits = config.text_column, {"train": config.train_split, "test": config.test_split}
    tab_labels = config.source == "files" and config.labelled
    result = []
    for role in ("train", "test"):
        part = dataset[splits[role]]
        tokenized = part.map(
            _tokenize_batch,
            batched=True,
            with_indices=True,
            desc=f"tokenizing {role}",
            fn_kwargs={"column": column, "mode": _split_mode(config), "tab_labels": tab_labels, "where": names[role]},
        )
        labels = list(tokenized["class"]) if tab_labels else _hub_labels(part, config.label_column, names[role])
        # each column read once: indexing a dataset's column re-reads it, once per line
        sentences, words = list(tokenized["sentence"]), list(tokenized["words"])
        kept = [i for i, sentence in enumerate(words) if sentence]
        split = Split(
            [sentences[i].strip() for i in kept],
            [words[i] for i in kept],
            None if labels is None else [labels[i] for i in kept],
            [i + 1 for i in kept],
        )
        blank = len(words) - len(split.words)
        if blank:
            logger.warning("%s: skipped %d blank lines", names[role], blank)
        if not split.words:
            raise DataError(f"{names[role]}: no non-blank sentences")
        result.append(split)
    return result[0], result[1]


def _hub_labels(part, column: str | None, where: str) -> list[str] | None:
    """The class name of each row of a Hugging Face split (a ClassLabel's names, else the values as text)."""
    if column is None:
        return None
    feature = part.features[column]
    values = list(part[column])  # read once
    for index, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where} row {index}: no label in column '{column}' (data.label_column)")
    if hasattr(feature, "int2str"):
        return [feature.int2str(value) for value in values]
    return [str(value).strip() for value in values]


def label_ids(names: Sequence[str], labels: Sequence[str], where: str) -> Tensor:
    """Class names -> ids [N] in the order of ``names``; a name not among them is a one-line error."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(
            f"{where}: label {unknown[0]!r} does not occur in the training split; known labels: {', '.join(names)}"
        )
    return torch.tensor([index[label] for label in labels], dtype=torch.long)


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
            raise DataError(f"data.dataset: '{config.dataset}' has no split '{split}'; available: {', '.join(dataset)}")
    columns = dataset[config.train_split].column_names
    for key, column in (("text_column", config.text_column), ("label_column", config.label_column)):
        if column is not None and column not in columns:
            raise DataError(f"data.{key}: '{config.dataset}' has no column '{column}'; available: {', '.join(columns)}")
    return dataset
