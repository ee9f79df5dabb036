"""Language-model judges of generated text (Zhao et al. 2018; Semeniuta et al. 2018; de Masson d'Autume et al.
2019): ``lm_score`` is the mean per-token NLL of the samples under an LM trained on the real training split
(quality); ``reverse_lm_score`` is the mean per-token NLL of the real test split under an LM trained on the
samples (diversity and coverage). Lower is better for both.

Both judges are this project's LSTM generator trained by MLE (its teacher-forced NLL, Adam, gradient-norm
clipping, as in the MLE phase) with one fixed size, budget and seed (:class:`JudgeSpec`, stated in every
report), so that scores are comparable across runs and models. They read text, not a run's token ids: the
words are split as ``data.tokenization: nltk`` splits them and the vocabulary is that of the real training
split, shared by both judges (a word a generator never writes still has a place in the reverse judge, with
the probability its training gives it). The real-data judge is cached per training split and spec under
``$RELGAN_CACHE`` (default ``~/.cache/relgan``); the reverse judge is trained anew for each sample set.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from relgan.config import GeneratorConfig
from relgan.io_utils import atomic_write_json, publish_directory
from relgan.metrics.nll import nll_test
from relgan.models import Generator
from relgan.tokenization import build_word_tokenizer, encode, load_tokenizer, save_tokenizer, split_words

JUDGE_FORMAT = 1  # bump when training or scoring changes, so that cached judges are retrained


@dataclass(frozen=True)
class JudgeSpec:
    """Size, budget and seed of a judge (the same for every run, so that scores compare)."""

    embedding_dim: int = 64
    hidden_size: int = 128
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-2
    grad_clip: float = 5.0
    seed: int = 0
    max_len: int = 64  # tokens per sentence (longer ones are cut)

    def describe(self) -> str:
        return (
            f"LSTM {self.embedding_dim}/{self.hidden_size}, {self.epochs} MLE epochs, batch {self.batch_size}, "
            f"Adam {self.lr:g}, clip {self.grad_clip:g}, seed {self.seed}"
        )


class LanguageModelJudge:
    """An LSTM language model over the real training split's words, trained on some sentences."""

    def __init__(self, tokenizer, model: Generator, spec: JudgeSpec) -> None:
        self.tokenizer, self.model, self.spec = tokenizer, model, spec

    @property
    def seq_len(self) -> int:
        return self.model.seq_len

    def ids(self, sentences: Sequence[str]) -> Tensor:
        """Sentences -> ids [N, seq_len] in the judge's vocabulary (<eos>-padded, long ones cut)."""
        ids, _ = encode(self.tokenizer, [" ".join(split_words(s, "nltk")) for s in sentences], self.seq_len)
        return ids

    def score(self, sentences: Sequence[str]) -> float:
        """Mean per-token NLL (nats) of the sentences' words and their end of sentence."""
        self.model.eval()
        return nll_test(self.model, self.ids(sentences), self.tokenizer.eos_token_id, self.spec.batch_size * 4)

    @classmethod
    def untrained(cls, vocabulary: Sequence[str], spec: JudgeSpec) -> LanguageModelJudge:
        """A fresh judge whose vocabulary and length come from the real training sentences ``vocabulary``."""
        words = [split_words(s, "nltk") for s in vocabulary]
        tokenizer = build_word_tokenizer(words)
        seq_len = min(max(len(w) for w in words) + 1, spec.max_len)  # room for the end of sentence
        return cls(tokenizer, _lstm(spec, tokenizer, seq_len), spec)

    def fit(self, sentences: Sequence[str]) -> LanguageModelJudge:
        """MLE on ``sentences`` for the spec's epochs (shuffled by the spec's seed); returns self."""
        spec, model = self.spec, self.model
        ids = self.ids(sentences)
        order = torch.Generator().manual_seed(spec.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
        model.train()
        with torch.enable_grad():
            for _ in range(spec.epochs):
                for batch in ids[torch.randperm(len(ids), generator=order)].split(spec.batch_size):
                    loss = model(batch, mode="nll").mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
                    optimizer.step()
        model.eval()
        return self

    def save(self, directory: Path) -> None:
        """Write the judge to ``directory`` atomically (a concurrent writer's complete copy is kept)."""

        def write(staging: Path) -> None:
            save_tokenizer(self.tokenizer, staging / "tokenizer")
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, staging / "model.safetensors")
            atomic_write_json(
                staging / "judge.json", {"format": JUDGE_FORMAT, "spec": asdict(self.spec), "seq_len": self.seq_len}
            )

        publish_directory(directory, write)

    @classmethod
    def load(cls, directory: Path, spec: JudgeSpec) -> LanguageModelJudge | None:
        """The judge saved in ``directory``, or None when there is none of this format and spec."""
        try:
            meta = json.loads((directory / "judge.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format") != JUDGE_FORMAT or meta.get("spec") != asdict(spec):
            return None
        tokenizer = load_tokenizer(directory / "tokenizer")
        model = _lstm(spec, tokenizer, meta["seq_len"])
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return cls(tokenizer, model.eval(), spec)


def _lstm(spec: JudgeSpec, tokenizer, seq_len: int) -> Generator:
    """The judge's LSTM generator, initialised from the spec's seed; the caller's RNG stream (a training
    run's) is left as it was."""
    config = GeneratorConfig(architecture="lstm", embedding_dim=spec.embedding_dim, hidden_size=spec.hidden_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return Generator(config, len(tokenizer), seq_len, tokenizer.bos_token_id)


def cache_dir() -> Path:
    return Path(os.environ.get("RELGAN_CACHE", Path.home() / ".cache" / "relgan"))


class LanguageModelJudges:
    """``lm_score`` and ``reverse_lm_score`` of sample sets against one real training and test split."""

    def __init__(
        self, train: Sequence[str], test: Sequence[str], spec: JudgeSpec = JudgeSpec(), cache: Path | None = None
    ) -> None:
        """``train`` and ``test``: the real splits as sentences (text, or an oracle's tokens joined by spaces)."""
        self.train, self.test, self.spec = list(train), list(test), spec
        digest = hashlib.sha256("\n".join(self.train).encode()).hexdigest()[:16]
        spec_digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:8]
        self.directory = (cache or cache_dir()) / "lm-judges" / f"{digest}-{spec_digest}"
        self._real: LanguageModelJudge | None = None
        self._test_score: float | None = None

    def real_judge(self) -> LanguageModelJudge:
        """The judge trained on the real training split (from the cache when it is there)."""
        if self._real is None:
            self._real = LanguageModelJudge.load(self.directory, self.spec)
        if self._real is None:
            self._real = LanguageModelJudge.untrained(self.train, self.spec).fit(self.train)
            self._real.save(self.directory)
        return self._real

    def test_score(self) -> float:
        """The real test split's score under the real-data judge: the lm_score of real text."""
        if self._test_score is None:
            self._test_score = self.real_judge().score(self.test)
        return self._test_score

    def __call__(self, samples: Sequence[str]) -> dict:
        """lm_score and reverse_lm_score of ``samples``, :meth:`test_score` and the judges' spec."""
        real = self.real_judge()
        # the reverse judge shares the real judge's vocabulary and length (and starts from the same seed)
        reverse = LanguageModelJudge(real.tokenizer, _lstm(self.spec, real.tokenizer, real.seq_len), self.spec)
        reverse.fit(samples)
        return {
            "lm_score": real.score(samples),
            "reverse_lm_score": reverse.score(self.test),
            "lm_score_of_test": self.test_score(),
            "lm_judge": self.spec.describe(),
        }


@torch.no_grad()
def causal_lm_nll(sentences: Sequence[str], tokenizer, model, batch_size: int = 64) -> float:
    """Mean per-token NLL (nats) of the sentences under a pretrained causal LM: each sentence's tokens and an
    end of text, predicted from an end-of-text token (GPT-2's document start) and the tokens before them.
    Sentences longer than the model's context are cut."""
    eos = tokenizer.eos_token_id
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(sentences), batch_size):
        rows = [
            [eos, *tokenizer(s, add_special_tokens=False)["input_ids"], eos][:limit]
            for s in sentences[start : start + batch_size]
        ]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), eos, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        total += float((nll * mask[:, 1:]).sum(dtype=torch.float64))
        count += int(mask[:, 1:].sum())
    return total / count
