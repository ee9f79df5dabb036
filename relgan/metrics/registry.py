"""Every metric of relgan in one table: its name (``eval.metrics``, ``--metrics``), the function that computes it,
the values it reports and which way each is better, where it applies, and its signature.

A signature (after sacreBLEU's) is a short line of everything that determines a metric's values, e.g.
``bleu|proto:relgan|hyp:200|ref:10000|tok:nltk|smooth:method1|v:0.2.0``. Every evaluation records one per metric
under ``signatures``; seed aggregates and the verdict refuse to put together values whose signatures differ, and
a record written before signatures existed is ``unsigned``, never guessed.

Each metric declares what it needs (:class:`Need`): references, an oracle, a generator, token ids, the LM judges,
an extra. The config refuses a listed metric whose needs a run cannot meet, the evaluation builds what the listed
metrics need, and :func:`evaluate` computes each metric whose needs the evaluation at hand meets.

Adding a metric: a :class:`Metric` in :data:`METRICS` (its function reads what it needs from :class:`Sampled`),
and its test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from relgan.config import Config, MetricSpec
from relgan.decoding import PLAIN, Decoding
from relgan.metrics.embedding import fed_available
from relgan.metrics.exact import MAX_SENTENCES, enumerable, exact_report
from relgan.metrics.nll import nll_gen, nll_test

if TYPE_CHECKING:
    from relgan.data import Corpus
    from relgan.metrics.lm_judges import LanguageModelJudges
    from relgan.models import SequenceGenerator

try:
    VERSION = metadata.version("relgan")
except metadata.PackageNotFoundError:  # a source tree that was not installed
    VERSION = "unknown"
UNSIGNED = "unsigned (written before signatures)"


class TextMetrics(Protocol):
    """The text metrics of samples against one reference set (relgan.evaluation.TextEvaluator)."""

    protocol: Any  # its name: which samples and references BLEU uses
    tokenization: str
    split_id: str  # the tok: field of the signatures
    training: Sequence[Any] | None

    def bleu(self, words: Sequence[Sequence[str]]) -> dict: ...
    def backward_bleu(self, words: Sequence[Sequence[str]], forward: dict) -> dict: ...
    def self_bleu(self, words: Sequence[Sequence[str]]) -> dict: ...
    def diversity(self, words: Sequence[Sequence[str]]) -> dict: ...
    def fed(self, texts: Sequence[str]) -> dict: ...


@dataclass
class Sampled:
    """What one evaluation has: the samples (decoded, and split into the n-gram metrics' units), and where they
    came from (a generator and its corpus part, or a file)."""

    texts: list[str]
    words: list[list[str]]
    text: TextMetrics | None = None  # the text metrics' references (real text only)
    judges: LanguageModelJudges | None = None
    generator: SequenceGenerator | None = None
    corpus: Corpus | None = None
    ids: Any = None  # the sampled ids [N, T] (a generator's samples)
    options: dict[str, Any] = field(default_factory=dict)  # batch sizes, decoding rule, label


@dataclass(frozen=True)
class Value:
    """One reported number; ``{n}`` in its key stands for each BLEU order."""

    key: str
    label: str
    higher_is_better: bool


@dataclass(frozen=True)
class Need:
    """Something a metric needs: whether a run of a config can have it, and whether an evaluation has it."""

    name: str
    obstacle: Callable[[Config], str | None]  # why a run of this config cannot have it (None: it can)
    present: Callable[[Sampled], bool]


REFERENCES = Need(
    "references",
    lambda c: "it needs real text as references (data.source=files or hub)" if c.data.source == "oracle" else None,
    lambda run: run.text is not None,
)
ORACLE = Need(
    "oracle",
    lambda c: None if c.data.source == "oracle" else "it needs the synthetic oracle (data.source=oracle)",
    lambda run: run.corpus is not None and run.corpus.oracle is not None,
)
ENUMERABLE = Need(
    "an enumerable oracle",
    lambda c: (
        None
        if c.data.source != "oracle" or enumerable(c.data.oracle.vocab_size, c.data.oracle.seq_len)
        else (
            f"it enumerates every sentence, and data.oracle.vocab_size ** data.oracle.seq_len = "
            f"{c.data.oracle.vocab_size}^{c.data.oracle.seq_len} is over {MAX_SENTENCES:,} (configs/exact.yaml: 8^6)"
        )
    ),
    lambda run: (
        run.corpus is not None
        and run.corpus.oracle is not None
        and enumerable(run.corpus.vocab_size, run.corpus.seq_len)
    ),
)
GENERATOR = Need("generator", lambda c: None, lambda run: run.generator is not None)  # not a samples file
# token ids: a generator's samples, or sentences resampled from them (relgan/reranking.py); not a samples file
TOKEN_IDS = Need("token ids", lambda c: None, lambda run: run.ids is not None)
JUDGES = Need("lm judges", lambda c: None, lambda run: run.judges is not None)  # trained on the training split
FED_EXTRA = Need(
    "the fed extra",
    lambda c: None if fed_available() else "it needs the 'fed' extra: pip install -e '.[fed]'",
    lambda run: True,  # without it the evaluation reports None with a notice
)


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    values: tuple[Value, ...]
    needs: tuple[Need, ...]
    compute: Callable[[Sampled, dict], dict]  # (the evaluation, the report so far) -> its values
    signature: Callable[[Sampled, dict], str]  # (the evaluation, its values) -> its signature
    default: bool = False  # in the default eval.metrics (where it applies)

    def obstacle(self, config: Config) -> str | None:
        """Why a run of ``config`` cannot compute this metric (None: it can)."""
        return next((problem for need in self.needs if (problem := need.obstacle(config)) is not None), None)

    def applies(self, run: Sampled) -> bool:
        """Whether the evaluation ``run`` has everything this metric needs."""
        return all(need.present(run) for need in self.needs)

    def spec(self) -> MetricSpec:
        return MetricSpec(self.name, self.help, self.default, self.obstacle)


def sign(name: str, *fields: str) -> str:
    """A signature line: ``name|field|...|v:<relgan version>``."""
    return "|".join([name, *fields, f"v:{VERSION}"])


def _digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def _text(run: Sampled) -> TextMetrics:
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
        _decoding(run),
        options.get("label"),
    )
    return {"nll_test": value}


def _nll_oracle(run: Sampled, report: dict) -> dict:
    oracle = _corpus(run).oracle
    if oracle is None:
        raise ValueError("NLL_oracle needs the synthetic oracle")
    return {"nll_oracle": oracle.nll(run.ids)}


def _bleu_signature(run: Sampled, values: dict) -> str:
    text = _text(run)
    return sign(
        "bleu",
        f"proto:{text.protocol.name}",
        f"hyp:{values.get('bleu_hypotheses')}",
        f"ref:{values.get('bleu_references')}",
        f"tok:{text.split_id}",
        "smooth:method1",
    )


def _bw_bleu_signature(run: Sampled, values: dict) -> str:
    text = _text(run)
    return sign(
        "bw_bleu",
        f"proto:{text.protocol.name}",
        f"hyp:{values.get('bw_bleu_hypotheses')}",
        f"ref:{values.get('bw_bleu_references')}",
        f"tok:{text.split_id}",
        "smooth:method1",
    )


def _self_bleu_signature(run: Sampled, values: dict) -> str:
    return sign(
        "self_bleu",
        f"proto:{_text(run).protocol.name}",
        f"n:{values.get('self_bleu_samples')}",
        "leave-one-out",
        f"tok:{_text(run).split_id}",
        "smooth:method1",
    )


def _diversity_signature(run: Sampled, values: dict) -> str:
    text = _text(run)
    train = f"train:{len(text.training)}" if text.training is not None else "train:none"
    return sign("diversity", f"n:{len(run.texts)}", f"tok:{text.split_id}", train)


def _fed_signature(run: Sampled, values: dict) -> str:
    return sign("fed", "emb:all-MiniLM-L6-v2", f"n:{values.get('fed_samples')}", "mauve:mauve-text-defaults")


def _lm_signature(run: Sampled, values: dict) -> str:
    judges = run.judges
    if judges is None:
        raise ValueError("the LM judges are missing")
    return sign(
        "lm",
        f"judge:{judges.spec.describe()}",
        f"train:{_digest(judges.train)}",
        f"test:{_digest(judges.test)}",
        f"n:{len(run.texts)}",
    )


def _nll_signature(name: str, convention: str) -> Callable[[Sampled, dict], str]:
    def signature(run: Sampled, values: dict) -> str:
        corpus = _corpus(run)
        rows = len(corpus.train_ids) if name == "nll_gen" else len(corpus.test_ids)
        return sign(name, convention, f"rows:{rows}", f"T:{corpus.seq_len}")

    return signature


def _oracle_name(run: Sampled) -> str:
    """The oracle field of a signature: SeqGAN's fixed weights, or the N(0, 1) ones of a seed."""
    oracle = _corpus(run).oracle
    if oracle is None:
        return "oracle:none"
    return "oracle:seqgan" if oracle.config.params is not None else f"oracle-seed:{oracle.config.seed}"


def _oracle_signature(run: Sampled, values: dict) -> str:
    corpus = _corpus(run)
    return sign("nll_oracle", _oracle_name(run), f"V:{corpus.vocab_size}", f"T:{corpus.seq_len}", f"n:{len(run.texts)}")


def _decoding(run: Sampled) -> Decoding:
    return run.options.get("decoding", PLAIN)


def _exact(run: Sampled, report: dict) -> dict:
    oracle = _corpus(run).oracle
    if oracle is None:
        raise ValueError("the exact metrics need the oracle")
    return exact_report(_generator(run), oracle, _decoding(run), run.options.get("label"))


def _exact_signature(run: Sampled, values: dict) -> str:
    corpus = _corpus(run)
    return sign(
        "exact",
        _oracle_name(run),
        f"V:{corpus.vocab_size}",
        f"T:{corpus.seq_len}",
        "kl-unit:nats-per-token",
        "enumerated",
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
            (REFERENCES,),
            lambda run, report: _text(run).bleu(run.words),
            _bleu_signature,
            default=True,
        ),
        Metric(
            "bw_bleu",
            "backward BLEU-n (the test sentences against the samples: coverage) and its harmonic mean "
            "with BLEU-n (cotk's FW/BW-BLEU)",
            (Value("bw-bleu-{n}", "backward BLEU-{n}", True), Value("fw-bw-bleu-{n}", "FW/BW-BLEU-{n}", True)),
            (REFERENCES,),
            lambda run, report: _text(run).backward_bleu(run.words, report),
            _bw_bleu_signature,
        ),
        Metric(
            "self_bleu",
            "Self-BLEU-n of each sample against the others (leave-one-out)",
            (Value("self-bleu-{n}", "Self-BLEU-{n}", False),),
            (REFERENCES,),
            lambda run, report: _text(run).self_bleu(run.words),
            _self_bleu_signature,
        ),
        Metric(
            "nll_gen",
            "NLL of the generator on the training data (RelGAN's NLL_gen)",
            (Value("nll_gen", "NLL_gen", False),),
            (GENERATOR,),
            _nll_gen,
            _nll_signature("nll_gen", "conv:relgan-train-full-batches-padding-included"),
            default=True,
        ),
        Metric(
            "nll_test",
            "NLL of the generator on the test data (words and end of sentence)",
            (Value("nll_test", "NLL_test", False),),
            (GENERATOR,),
            _nll_test,
            _nll_signature("nll_test", "conv:test-eos-no-padding"),
            default=True,
        ),
        Metric(
            "nll_oracle",
            "NLL of the samples under the oracle (synthetic benchmark)",
            (Value("nll_oracle", "NLL_oracle", False),),
            (TOKEN_IDS, ORACLE),
            _nll_oracle,
            _oracle_signature,
            default=True,
        ),
        Metric(
            "exact",
            "forward KL(oracle || G), reverse KL(G || oracle), total variation and G's entropy, computed exactly "
            "over every sentence (an oracle of at most 2^20 sentences)",
            (
                Value("exact_forward_kl", "KL(oracle || G)", False),
                Value("exact_reverse_kl", "KL(G || oracle)", False),
                Value("exact_tv", "total variation", False),
                Value("exact_entropy", "entropy of G", True),
                Value("oracle_entropy", "entropy of the oracle", True),
            ),
            (GENERATOR, ORACLE, ENUMERABLE),
            _exact,
            _exact_signature,
            default=True,
        ),
        Metric(
            "diversity",
            "distinct-1..4, unique fraction, mean length, novelty against the training sentences",
            (
                Value("distinct-{n}", "distinct-{n}", True),
                Value("unique_fraction", "unique fraction", True),
                Value("novelty", "novelty", True),
            ),
            (REFERENCES,),
            lambda run, report: _text(run).diversity(run.words),
            _diversity_signature,
        ),
        Metric(
            "fed",
            "FED-MiniLM and MAUVE of the samples against the test sentences (the 'fed' extra)",
            (Value("fed-minilm", "FED-MiniLM", False), Value("mauve", "MAUVE", True)),
            (REFERENCES, FED_EXTRA),
            lambda run, report: _text(run).fed(run.texts),
            _fed_signature,
        ),
        Metric(
            "lm",
            "the LM judges: lm_score (quality) and reverse_lm_score (diversity, coverage)",
            (Value("lm_score", "lm_score", False), Value("reverse_lm_score", "reverse_lm_score", False)),
            (JUDGES,),
            _judge,
            _lm_signature,
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


def evaluate(run: Sampled, names: Sequence[str]) -> dict:
    """The values and signatures of the metrics ``names`` whose needs ``run`` meets, in the table's order."""
    report: dict = {}
    signatures: dict[str, str] = {}
    for metric in METRICS.values():
        if metric.name not in names or not metric.applies(run):
            continue
        values = metric.compute(run, report)
        report.update(values)
        signatures[metric.name] = metric.signature(run, values)
    report["signatures"] = signatures
    return report


def from_text(metric: Metric) -> bool:
    """Whether ``metric`` can be computed from a samples file's text alone (no generator, no token ids)."""
    return GENERATOR not in metric.needs and TOKEN_IDS not in metric.needs


def needed(names: Sequence[str], need: Need) -> bool:
    """Whether any of the metrics ``names`` needs ``need`` (what an evaluation must build)."""
    return any(need in METRICS[name].needs for name in names)
