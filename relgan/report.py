"""``relgan evaluate``: reports for a run's generator or for any text files, and sweeps over decoding rules."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from relgan import fast
from relgan.checkpoint import load_generator, load_run_config
from relgan.compare import SYNTHETIC_PLANES, TEXT_PLANES, aggregate, plot_planes
from relgan.data import load_corpus
from relgan.decoding import PLAIN, Decoding, rule_of
from relgan.errors import RelganError
from relgan.evaluation import CorpusEvaluation, TextEvaluator
from relgan.io_utils import atomic_write_json, read_text_lines
from relgan.metrics.embedding import fed_available
from relgan.metrics.lm_judges import LanguageModelJudges, causal_lm_nll
from relgan.metrics.registry import FED_EXTRA, JUDGES, METRICS, from_text, metric_of
from relgan.models import Discriminator
from relgan.pretrained import load_causal_lm, load_text_tokenizer
from relgan.reranking import reranking_signature, sir_resampled
from relgan.tokenization import metric_words, split_identity, unknown_share

logger = logging.getLogger("relgan")

# the defaults, from the registry: every metric of a run; every metric of a samples file; those on a verdict plane
RUN_METRICS = tuple(name for name, metric in METRICS.items() if FED_EXTRA not in metric.needs)
TEXT_METRICS = tuple(name for name in RUN_METRICS if from_text(METRICS[name]))
SWEEP_METRICS = tuple(
    sorted(
        {
            metric_of(axis.key)
            for plane in (*TEXT_PLANES, *SYNTHETIC_PLANES)
            for axis in (plane.quality, plane.diversity)
        }
        - {"fed"}
    )
)


def with_fed(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` plus FED and MAUVE when the 'fed' extra is installed."""
    return (*metrics, "fed") if fed_available() else tuple(metrics)


def judge_lm_report(samples: Sequence[str], directory: str) -> dict[str, Any]:
    """The samples' mean per-token NLL and perplexity under the causal LM saved in ``directory``."""
    tokenizer, model = load_causal_lm(directory, "--judge-lm")
    nll = causal_lm_nll(samples, tokenizer, model)
    return {"judge_lm_nll": nll, "judge_lm_ppl": math.exp(nll), "judge_lm": str(directory)}


def evaluate_run(
    run_dir: Path,
    checkpoint: Path | None,
    protocol: str,
    metrics: Sequence[str] | None,
    num_samples: int | None,
    seed: int | None,
    device: str,
    judge_lm: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Report of a run's final generator (or ``checkpoint``) on the run's own data (and under the causal LM
    saved in ``judge_lm``); also the samples."""
    session = _RunSession(run_dir, checkpoint, protocol, device)
    report, texts = session.report(metrics or with_fed(RUN_METRICS), num_samples, seed, PLAIN)
    if judge_lm is not None:
        report.update(judge_lm_report(texts, judge_lm))
    return report, texts


def decoding_sweep(
    run_dir: Path,
    checkpoint: Path | None,
    protocol: str,
    rules: Sequence[Decoding],
    num_samples: int | None,
    seed: int | None,
    device: str,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Quality-diversity curves (Caccia et al., 2020) over decoding rules (temperature, top-k, top-p): by default
    BLEU, Self-BLEU, NLL_test, NLL_oracle, the exact metrics, the LM judges (and FED and MAUVE with the 'fed'
    extra) under each rule."""
    session = _RunSession(run_dir, checkpoint, protocol, device)
    points = []
    for rule in rules:
        report, _ = session.report(metrics or with_fed(SWEEP_METRICS), num_samples, seed, rule)
        points.append({"decoding": rule.label, **asdict(rule), **report})
    return {"protocol": protocol, "run": str(run_dir), "points": points}


def reranked_sweep(
    run_dir: Path,
    protocol: str,
    alphas: Sequence[float],
    candidates: int,
    reranker_steps: int,
    num_samples: int,
    seed: int,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """MLE reranked by a discriminator on any benchmark (relgan/reranking.py, by SIR): a discriminator of the run's
    sizes is trained ``reranker_steps`` steps on the training sentences against the run's generator, then
    ``num_samples`` of ``candidates`` draws are resampled per alpha; each point has the metrics of
    :func:`decoding_sweep` computed from samples (not NLL_test) and a ``reranking`` signature. On the CPU."""
    session = _RunSession(run_dir, None, protocol, "cpu")
    corpus = session.corpus
    if corpus.label_names is not None:
        raise RelganError(f"{run_dir}: MLE reranked by a discriminator is not available for labelled corpora")
    torch.manual_seed(seed)
    discriminator = Discriminator(session.config.discriminator, corpus.vocab_size, corpus.seq_len)
    real, batch_size = corpus.train_ids, session.config.eval.batch_size
    # the reranker's training is the slow part on text (minutes on a CPU), so it resumes if stopped
    checkpoint = run_dir / f"reranker-s{seed}-steps{reranker_steps}.pt"
    resampled = sir_resampled(
        session.generator,
        discriminator,
        real,
        tuple(alphas),
        candidates,
        num_samples,
        reranker_steps,
        seed,
        batch_size,
        checkpoint,
    )
    signature = reranking_signature(reranker_steps, candidates)
    options = {"batch_size": batch_size}
    points = []
    with torch.no_grad():
        for alpha, ids in resampled.items():
            report, _ = session.evaluation.of_sentences(ids, metrics or with_fed(SWEEP_METRICS), options)
            signatures = {**report.pop("signatures"), "reranking": signature}
            points.append({"alpha": alpha, **report, "num_samples": num_samples, "signatures": signatures})
    return {"protocol": protocol, "run": str(run_dir), "points": points}


class _RunSession:
    """A run's generator, corpus and text evaluator, loaded once for several reports."""

    def __init__(self, run_dir: Path, checkpoint: Path | None, protocol: str, device: str) -> None:
        self.config = load_run_config(run_dir)
        self.generator, tokenizer, _ = load_generator(run_dir, checkpoint)
        self.generator.to(device).eval()
        fast.apply(self.generator, setting=self.config.run.backend, device=device)
        # a pretrained model's tokenizer is the run's (its copy in the run directory)
        self.corpus = load_corpus(
            self.config.data, saved=run_dir, tokenizer=tokenizer if self.config.generator.pretrained else None
        )
        if self.corpus.oracle is not None:
            self.corpus.oracle.to(device)
        self.evaluation = CorpusEvaluation(self.corpus, protocol, self.config.eval.bleu_orders, tuple(METRICS))
        self.checkpoint = checkpoint

    def report(
        self, metrics: Sequence[str], num_samples: int | None, seed: int | None, decoding: Decoding
    ) -> tuple[dict[str, Any], list[str]]:
        config = self.config
        with torch.no_grad():
            report, texts = self.evaluation(
                self.generator,
                metrics,
                num_samples=num_samples or config.eval.num_samples,
                batch_size=config.eval.batch_size,
                seed=config.run.seed if seed is None else seed,
                nll_batch_size=config.mle.batch_size,
                decoding=decoding,
            )
        report.setdefault("num_samples", num_samples or config.eval.num_samples)
        report["weights"] = str(self.checkpoint or "final export")
        return report, texts


def evaluate_files(
    samples: Path,
    references: Path,
    train: Path | None,
    protocol: str,
    metrics: Sequence[str] | None,
    orders: Sequence[int] = (2, 3, 4, 5),
    judge_lm: str | None = None,
    tokenize: str = "nltk",
) -> dict[str, Any]:
    """Text metrics of a samples file against a references file; with a training file also novelty and the LM
    judges (trained on its lines; ``references`` is the real test split of ``reverse_lm_score``); with
    ``judge_lm`` the samples' NLL under the causal LM saved there. ``tokenize`` splits sentences for the n-gram
    metrics: nltk, whitespace, char, or a directory holding a Hugging Face tokenizer (its pieces)."""
    sample_lines = [line.strip() for line in read_text_lines(samples, "--samples") if line.strip()]
    reference_lines = [line.strip() for line in read_text_lines(references, "--references") if line.strip()]
    train_lines = None
    if train is not None:
        train_lines = [line.strip() for line in read_text_lines(train, "--train") if line.strip()]
    allowed = tuple(name for name, metric in METRICS.items() if from_text(metric))
    if metrics is None:
        chosen = [m for m in with_fed(TEXT_METRICS) if JUDGES not in METRICS[m].needs or train_lines is not None]
    else:
        chosen = [m for m in metrics if m in allowed]
        if not chosen:
            raise RelganError(f"--metrics: with --samples only {', '.join(allowed)} apply")
        if "lm" in chosen and train_lines is None:
            raise RelganError("--metrics lm: the LM judges are trained on real text; give it with --train FILE")
    tokenization, split_id, words, unknown = _splitter(tokenize)
    if unknown is not None:
        for what, lines in (("--samples", sample_lines), ("--references", reference_lines)):
            _check_unknown(what, tokenize, [words(line) for line in lines], unknown)
    training = [words(line) for line in train_lines] if train_lines is not None else None
    evaluator = TextEvaluator(reference_lines, protocol, orders, training, words, tokenization, split_id)
    report = evaluator(sample_lines, chosen)
    if "lm" in chosen and train_lines is not None:
        report.update(LanguageModelJudges(train_lines, reference_lines)(sample_lines))
    if judge_lm is not None:
        report.update(judge_lm_report(sample_lines, judge_lm))
    return report


# a tokenizer that does not know this share of a file's pieces was built for other text: BLEU would compare <unk>s
UNKNOWN_WARNING, UNKNOWN_REFUSED = 0.05, 0.5


def _splitter(tokenize: str) -> tuple[str, str, Callable[[str], list[str]], str | None]:
    """(the name recorded, the signature's tok: field, the split, the tokenizer's unknown piece or None) of
    ``--tokenize``: a mode of data.tokenization, or a tokenizer directory."""
    if tokenize in ("nltk", "whitespace", "char"):
        return tokenize, tokenize, metric_words(tokenize), None
    if not Path(tokenize).is_dir():
        raise RelganError(f"--tokenize {tokenize!r}: neither nltk, whitespace, char nor a tokenizer directory")
    tokenizer = load_text_tokenizer(tokenize)
    name = f"tokenizer:{Path(tokenize).name}"
    return name, split_identity("tokenizer", tokenizer), metric_words("tokenizer", tokenizer), tokenizer.unk_token


def _check_unknown(what: str, tokenize: str, pieces: list[list[str]], unknown: str) -> None:
    """Refuse (past UNKNOWN_REFUSED) or warn (past UNKNOWN_WARNING) when the tokenizer does not know the text."""
    share = unknown_share(pieces, unknown)
    message = f"{what}: {share:.0%} of its pieces are unknown ({unknown}) to the tokenizer of --tokenize {tokenize}"
    if share >= UNKNOWN_REFUSED:
        raise RelganError(
            f"{message}; it was built for other text, and BLEU would compare {unknown}s: use nltk, "
            "whitespace or char, or the tokenizer of this text"
        )
    if share >= UNKNOWN_WARNING:
        logger.warning("%s; the n-gram metrics treat them as one token", message)


def format_table(report: dict[str, Any]) -> str:
    """Two aligned columns: metric and value (numbers with 4 decimals); per-class values as ``class/metric``; then
    each metric's signature (how it was computed), so that numbers copied from the terminal keep it."""
    flat = dict(report)
    for name, values in flat.pop("per_class", {}).items():
        flat.update({f"{name}/{key}": value for key, value in values.items() if not isinstance(value, str)})
    rows = [
        (k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in flat.items() if not isinstance(v, (list, dict))
    ]
    signatures = list(report.get("signatures", {}).items())
    width = max(len(k) for k, _ in [*rows, *signatures])
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if signatures:
        lines += ["signatures:", *(f"{k:<{width}}  {v}" for k, v in signatures)]
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, report)


def plot_sweep(curve: dict[str, Any], path: Path) -> list[Path]:
    """The sweep on each quality-diversity plane its points have, as PNGs ``<path>-<plane>.png``; [] without
    matplotlib."""
    sweep = {rule_of(p): aggregate([p]) for p in curve["points"]}
    planes = TEXT_PLANES if any(p.get("bleu-4") is not None for p in curve["points"]) else SYNTHETIC_PLANES
    return plot_planes(sweep, {}, planes, path.with_suffix(""), f"decoding sweep, {curve['run']}")
