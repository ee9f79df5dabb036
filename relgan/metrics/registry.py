"""Every metric of relgan in one table: its name (``eval.metrics``, ``--metrics``), the function that computes it,
the values it reports and which way each is better, where it applies, and its signature.

A signature (after sacreBLEU's) is a short line of everything that determines a metric's values, e.g.
``bleu|proto:relgan|hyp:200|ref:10000|tok:nltk|smooth:method1|v:0.2.0``. Every evaluation records one per metric
under ``signatures``; seed aggregates and the verdict refuse to put together values whose signatures differ, and
a record written before signatures existed is ``unsigned``, never guessed.

Adding a metric: a :class:`Metric` in :data:`METRICS` (its function reads what it needs from :class:`Sampled`),
and its test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from relgan.metrics.nll import nll_gen, nll_test

if TYPE_CHECKING:  # the evaluation builds on this table
    from relgan.data import Corpus
    from relgan.evaluation import TextEvaluator
    from relgan.metrics.lm_judges import LanguageModelJudges
    from relgan.models import SequenceGenerator

try:
    VERSION = metadata.version("relgan")
except metadata.PackageNotFoundError:  # a source tree that was not installed
    VERSION = "unknown"
UNSIGNED = "unsigned (written before signatures)"


@dataclass
class Sampled:
    """What one evaluation has: the samples (decoded, and split into the n-gram metrics' units), and where they
    came from (a generator and its corpus part, or a file)."""

    texts: list[str]
    words: list[list[str]]
    text: TextEvaluator | None = None  # the text metrics' references (real text only)
    judges: LanguageModelJudges | None = None
    generator: SequenceGenerator | None = None
    corpus: Corpus | None = None
    ids: Any = None  # the sampled ids [N, T] (a generator's samples)
    options: dict[str, Any] = field(default_factory=dict)  # batch sizes, temperature, label


@dataclass(frozen=True)
class Value:
    """One reported number; ``{n}`` in its key stands for each BLEU order."""

    key: str
    label: str
    higher_is_better: bool


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    values: tuple[Value, ...]
    scope: str  # "any": every corpus; "text": real text (it has references); "oracle": the synthetic benchmark
    compute: Callable[[Sampled, dict], dict]  # (the evaluation, the report so far) -> its values
    signature: Callable[[Sampled, dict], str]  # (the evaluation, its values) -> its signature
    needs_generator: bool = False  # NLLs read a generator, not a samples file
    needs: str | None = None  # what else it needs, where it may be missing: "train" text, the "fed" extra


def _sign(name: str, *fields: str) -> str:
    return "|".join([name, *fields, f"v:{VERSION}"])


def _digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def _text(run: Sampled) -> TextEvaluator:
    if run.text is None:
        raise ValueError("a text metric needs references")
    return run.text


def _corpus(run: Sampled) -> Corpus:
    if run.corpus is None:
        raise ValueError("an NLL needs the generator's corpus")
    return run.corpus


def _generator(run: Sampled) -> SequenceGenerator:
    if run.generator is None:
        raise ValueError("an NLL needs the generator")
    return run.generator


def _nll_gen(run: Sampled, report: dict) -> dict:
    corpus, options = _corpus(run), run.options
    value = nll_gen(
        _generator(run), corpus.train_ids, options["nll_batch_size"], options["batch_size"], options.get("label")
    )
    return {"nll_gen": value}


def _nll_test(run: Sampled, report: dict) -> dict:
    corpus, options = _corpus(run), run.options
    value = nll_test(
        _generator(run),
        corpus.test_ids,
        corpus.eos_id,
        options["batch_size"],
        options.get("temperature", 1.0),
        options.get("label"),
    )
    return {"nll_test": value}


def _nll_oracle(run: Sampled, report: dict) -> dict:
    corpus = _corpus(run)
    return {} if corpus.oracle is None else {"nll_oracle": corpus.oracle.nll(run.ids)}


def _bleu_signature(run: Sampled, values: dict) -> str:
    text = _text(run)
    return _sign(
        "bleu",
        f"proto:{text.protocol.name}",
        f"hyp:{values.get('bleu_hypotheses')}",
        f"ref:{values.get('bleu_references')}",
        f"tok:{text.tokenization}",
        "smooth:method1",
    )


def _bw_bleu_signature(run: Sampled, values: dict) -> str:
    text = _text(run)
    return _sign(
        "bw_bleu",
        f"proto:{text.protocol.name}",
        f"hyp:{values.get('bw_bleu_hypotheses')}",
        f"ref:{values.get('bw_bleu_references')}",
        f"tok:{text.tokenization}",
        "smooth:method1",
    )


def _self_bleu_signature(run: Sampled, values: dict) -> str:
    return _sign(
        "self_bleu",
        f"proto:{_text(run).protocol.name}",
        f"n:{values.get('self_bleu_samples')}",
        "leave-one-out",
        f"tok:{_text(run).tokenization}",
        "smooth:method1",
    )


def _diversity_signature(run: Sampled, values: dict) -> str:
    text = _text(run)
    train = f"train:{len(text.training)}" if text.training is not None else "train:none"
    return _sign("diversity", f"n:{len(run.texts)}", f"tok:{text.tokenization}", train)


def _fed_signature(run: Sampled, values: dict) -> str:
    return _sign("fed", "emb:all-MiniLM-L6-v2", f"n:{values.get('fed_samples')}", "mauve:mauve-text-defaults")


def _lm_signature(run: Sampled, values: dict) -> str:
    judges = run.judges
    if judges is None:
        raise ValueError("the LM judges are missing")
    return _sign(
        "lm",
        f"judge:{judges.spec.describe()}",
        f"train:{_digest(judges.train)}",
        f"test:{_digest(judges.test)}",
        f"n:{len(run.texts)}",
    )


def _nll_signature(name: str, convention: str) -> Callable[[Sampled, dict], str]:
    def sign(run: Sampled, values: dict) -> str:
        corpus = _corpus(run)
        rows = len(corpus.train_ids) if name == "nll_gen" else len(corpus.test_ids)
        return _sign(name, convention, f"rows:{rows}", f"T:{corpus.seq_len}")

    return sign


def _oracle_signature(run: Sampled, values: dict) -> str:
    corpus = _corpus(run)
    oracle = corpus.oracle.config if corpus.oracle is not None else None
    seed = oracle.seed if oracle is not None else "none"
    return _sign(
        "nll_oracle", f"oracle-seed:{seed}", f"V:{corpus.vocab_size}", f"T:{corpus.seq_len}", f"n:{len(run.texts)}"
    )


def _judge(run: Sampled, report: dict) -> dict:
    if run.judges is None:
        raise ValueError("the LM judges are missing")
    return run.judges(run.texts)


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "bleu",
            "BLEU-n of the samples against the test sentences (nltk sentence_bleu, method1)",
            (Value("bleu-{n}", "BLEU-{n}", True),),
            "text",
            lambda run, report: _text(run).bleu(run.words),
            _bleu_signature,
        ),
        Metric(
            "bw_bleu",
            "backward BLEU-n (the test sentences against the samples: coverage) and its harmonic mean "
            "with BLEU-n (cotk's FW/BW-BLEU)",
            (Value("bw-bleu-{n}", "backward BLEU-{n}", True), Value("fw-bw-bleu-{n}", "FW/BW-BLEU-{n}", True)),
            "text",
            lambda run, report: _text(run).backward_bleu(run.words, report),
            _bw_bleu_signature,
        ),
        Metric(
            "self_bleu",
            "Self-BLEU-n of each sample against the others (leave-one-out)",
            (Value("self-bleu-{n}", "Self-BLEU-{n}", False),),
            "text",
            lambda run, report: _text(run).self_bleu(run.words),
            _self_bleu_signature,
        ),
        Metric(
            "nll_gen",
            "NLL of the generator on the training data (RelGAN's NLL_gen)",
            (Value("nll_gen", "NLL_gen", False),),
            "any",
            _nll_gen,
            _nll_signature("nll_gen", "conv:relgan-train-full-batches-padding-included"),
            needs_generator=True,
        ),
        Metric(
            "nll_test",
            "NLL of the generator on the test data (words and end of sentence)",
            (Value("nll_test", "NLL_test", False),),
            "any",
            _nll_test,
            _nll_signature("nll_test", "conv:test-eos-no-padding"),
            needs_generator=True,
        ),
        Metric(
            "nll_oracle",
            "NLL of the samples under the oracle (synthetic benchmark)",
            (Value("nll_oracle", "NLL_oracle", False),),
            "oracle",
            _nll_oracle,
            _oracle_signature,
            needs_generator=True,
        ),
        Metric(
            "diversity",
            "distinct-1..4, unique fraction, mean length, novelty against the training sentences",
            (
                Value("distinct-{n}", "distinct-{n}", True),
                Value("unique_fraction", "unique fraction", True),
                Value("novelty", "novelty", True),
            ),
            "text",
            lambda run, report: _text(run).diversity(run.words),
            _diversity_signature,
        ),
        Metric(
            "fed",
            "FED-MiniLM and MAUVE of the samples against the test sentences (the 'fed' extra)",
            (Value("fed-minilm", "FED-MiniLM", False), Value("mauve", "MAUVE", True)),
            "text",
            lambda run, report: _text(run).fed(run.texts),
            _fed_signature,
            needs="fed",
        ),
        Metric(
            "lm",
            "the LM judges: lm_score (quality) and reverse_lm_score (diversity, coverage)",
            (Value("lm_score", "lm_score", False), Value("reverse_lm_score", "reverse_lm_score", False)),
            "any",
            _judge,
            _lm_signature,
            needs="train",
        ),
    )
}


def metric_names() -> tuple[str, ...]:
    return tuple(METRICS)


def metric_of(key: str) -> str:
    """The name of the metric that reports ``key``."""
    for metric in METRICS.values():
        if any(_matches(value, key) for value in metric.values):
            return metric.name
    raise KeyError(f"{key!r} is not a registered metric value")


def _matches(value: Value, key: str) -> bool:
    prefix, marker, suffix = value.key.partition("{n}")
    if not marker:
        return key == value.key
    return key.startswith(prefix) and key.endswith(suffix) and key[len(prefix) : len(key) - len(suffix)].isdigit()


def value_of(key: str) -> Value:
    """The registered value a report key is (``bleu-4`` is ``bleu-{n}``), for its label and direction."""
    for metric in METRICS.values():
        for value in metric.values:
            if _matches(value, key):
                return value
    raise KeyError(f"{key!r} is not a registered metric value")


def evaluate(run: Sampled, names: Sequence[str], corpus_kind: str) -> dict:
    """The values and signatures of the metrics ``names`` that apply (``corpus_kind``: "text" or "oracle"), in
    the table's order."""
    report: dict = {}
    signatures: dict[str, str] = {}
    for metric in METRICS.values():
        if metric.name not in names or metric.scope not in ("any", corpus_kind):
            continue
        if metric.needs_generator and run.generator is None:
            continue
        if metric.name == "lm" and run.judges is None:
            continue
        if metric.scope == "text" and run.text is None:
            continue
        values = metric.compute(run, report)
        report.update(values)
        signatures[metric.name] = metric.signature(run, values)
    report["signatures"] = signatures
    return report
