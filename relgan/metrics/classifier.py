"""``class_accuracy``: the share of a class-conditional generator's samples of class c that a classifier trained
on the real training split assigns to c (the measure of SentiGAN, CatGAN and other conditional text GANs).

The classifier is this project's small CNN over words (Kim 2014: embedding, convolutions of heights 2-4 with
ReLU and max-pooling over time, dropout, a linear layer to the classes) with one fixed size, budget and seed
(:class:`ClassifierSpec`, stated in every report), trained by cross-entropy with Adam. Like the LM judges it
reads text over the real training split's vocabulary (``data.tokenization: nltk`` words), so it scores any
generator's samples; it is cached per training split, labels and spec under ``$RELGAN_CACHE``. Its accuracy
on the real test split (``classifier_test_accuracy``) is reported beside, as the ceiling of the measure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from relgan.io_utils import atomic_write_json, publish_directory
from relgan.metrics.lm_judges import cache_dir
from relgan.tokenization import build_word_tokenizer, encode, load_tokenizer, save_tokenizer, split_words

CLASSIFIER_FORMAT = 1  # bump when training or prediction changes, so that cached classifiers are retrained


@dataclass(frozen=True)
class ClassifierSpec:
    """Size, budget and seed of the classifier (the same for every run, so that accuracies compare)."""

    embedding_dim: int = 64
    filter_sizes: tuple[int, ...] = (2, 3, 4)
    num_filters: int = 64
    dropout: float = 0.5
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_len: int = 64  # tokens per sentence (longer ones are cut)

    def describe(self) -> str:
        filters = "/".join(map(str, self.filter_sizes))
        return (
            f"CNN {self.embedding_dim}-wide, filters {filters} x {self.num_filters}, {self.epochs} epochs, "
            f"batch {self.batch_size}, Adam {self.lr:g}, seed {self.seed}"
        )


class TextCNN(nn.Module):
    """ids [B, T] -> class logits [B, C]."""

    def __init__(self, spec: ClassifierSpec, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, spec.embedding_dim)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(spec.embedding_dim, spec.num_filters, size) for size in spec.filter_sizes
        )
        self.dropout = nn.Dropout(spec.dropout)
        self.output = nn.Linear(spec.num_filters * len(spec.filter_sizes), num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        embedded = self.embedding(ids).transpose(1, 2)  # [B, E, T]
        pooled = [torch.relu(conv(embedded)).max(dim=-1).values for conv in self.convolutions]
        return self.output(self.dropout(torch.cat(pooled, dim=-1)))


class SentenceClassifier:
    """The CNN with its vocabulary, sentence length and class names."""

    def __init__(
        self, tokenizer, model: TextCNN, seq_len: int, label_names: Sequence[str], spec: ClassifierSpec
    ) -> None:
        self.tokenizer, self.model, self.seq_len, self.spec = tokenizer, model, seq_len, spec
        self.label_names = list(label_names)

    @classmethod
    def untrained(
        cls, vocabulary: Sequence[str], label_names: Sequence[str], spec: ClassifierSpec
    ) -> SentenceClassifier:
        """A fresh classifier whose vocabulary and length come from the real training sentences ``vocabulary``
        (the length at least the largest filter, so that every sentence has a response)."""
        words = [split_words(s, "nltk") for s in vocabulary]
        tokenizer = build_word_tokenizer(words)
        seq_len = max(min(max(len(w) for w in words) + 1, spec.max_len), max(spec.filter_sizes))
        return cls(tokenizer, _cnn(spec, len(tokenizer), len(label_names)), seq_len, label_names, spec)

    def ids(self, sentences: Sequence[str]) -> Tensor:
        ids, _ = encode(self.tokenizer, [" ".join(split_words(s, "nltk")) for s in sentences], self.seq_len)
        return ids

    def fit(self, sentences: Sequence[str], labels: Tensor) -> SentenceClassifier:
        """Cross-entropy on (sentences, class ids [N]) for the spec's epochs, shuffled by its seed; returns self."""
        spec, model = self.spec, self.model
        ids = self.ids(sentences)
        order = torch.Generator().manual_seed(spec.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
        model.train()
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)  # dropout masks; the caller's RNG stream is left as it was
            for _ in range(spec.epochs):
                for rows in torch.randperm(len(ids), generator=order).split(spec.batch_size):
                    loss = F.cross_entropy(model(ids[rows]), labels[rows])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        model.eval()
        return self

    @torch.no_grad()
    def predict(self, sentences: Sequence[str]) -> Tensor:
        """The most likely class id of each sentence [N]."""
        self.model.eval()
        ids = self.ids(sentences)
        return torch.cat([self.model(chunk).argmax(dim=-1) for chunk in ids.split(self.spec.batch_size * 8)])

    def accuracy(self, sentences: Sequence[str], labels: Tensor) -> float:
        """Share of sentences whose predicted class is their label (class ids [N])."""
        return float((self.predict(sentences) == labels).float().mean())

    def save(self, directory: Path) -> None:
        def write(staging: Path) -> None:
            save_tokenizer(self.tokenizer, staging / "tokenizer")
            save_file(self.model.state_dict(), staging / "model.safetensors")
            atomic_write_json(
                staging / "classifier.json",
                {
                    "format": CLASSIFIER_FORMAT,
                    "spec": asdict(self.spec),
                    "seq_len": self.seq_len,
                    "labels": self.label_names,
                },
            )

        publish_directory(directory, write)

    @classmethod
    def load(cls, directory: Path, spec: ClassifierSpec) -> SentenceClassifier | None:
        """The classifier saved in ``directory``, or None when there is none of this format and spec."""
        try:
            meta = json.loads((directory / "classifier.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format") != CLASSIFIER_FORMAT or meta.get("spec") != json.loads(json.dumps(asdict(spec))):
            return None
        tokenizer = load_tokenizer(directory / "tokenizer")
        model = _cnn(spec, len(tokenizer), len(meta["labels"]))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return cls(tokenizer, model.eval(), meta["seq_len"], meta["labels"], spec)


def class_accuracy(classifier: SentenceClassifier, sentences: Sequence[str], label: int) -> float:
    """Share of ``sentences`` (samples asked to be of class ``label``) that the classifier assigns to it."""
    return float((classifier.predict(sentences) == label).float().mean())


def _cnn(spec: ClassifierSpec, vocab_size: int, num_classes: int) -> TextCNN:
    """The CNN initialised from the spec's seed, the caller's RNG stream left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return TextCNN(spec, vocab_size, num_classes)


def real_data_classifier(
    train: Sequence[str],
    labels: Tensor,
    label_names: Sequence[str],
    spec: ClassifierSpec = ClassifierSpec(),
    cache: Path | None = None,
) -> SentenceClassifier:
    """The classifier trained on the real training split (sentences and class ids [N]), from the cache when it
    is there."""
    payload = json.dumps([list(train), labels.tolist(), list(label_names)])
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    spec_digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:8]
    directory = (cache or cache_dir()) / "classifiers" / f"{digest}-{spec_digest}"
    classifier = SentenceClassifier.load(directory, spec)
    if classifier is None:
        classifier = SentenceClassifier.untrained(train, label_names, spec).fit(train, labels)
        classifier.save(directory)
    return classifier
