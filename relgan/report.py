"""``relgan evaluate``: reports for a run's generator or for any text files, and temperature sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from relgan import fast
from relgan.checkpoint import load_generator, load_run_config
from relgan.data import load_corpus
from relgan.errors import RelganError
from relgan.evaluation import TextEvaluator, generator_report
from relgan.io_utils import atomic_write_json, read_text_lines
from relgan.tokenization import reference_words

RUN_METRICS = ("bleu", "self_bleu", "nll_gen", "nll_test", "nll_oracle", "diversity")
TEXT_METRICS = ("bleu", "self_bleu", "diversity")


def evaluate_run(run_dir: Path, checkpoint: Path | None, protocol: str, metrics: Sequence[str] | None,
                 num_samples: int | None, seed: int | None, device: str) -> tuple[dict[str, Any], list[str]]:
    """Report of a run's final generator (or ``checkpoint``) on the run's own data; also the samples."""
    session = _RunSession(run_dir, checkpoint, protocol, device)
    return session.report(metrics or RUN_METRICS, num_samples, seed, temperature=1.0)


def temperature_sweep(run_dir: Path, checkpoint: Path | None, protocol: str, temperatures: Sequence[float],
                      num_samples: int | None, seed: int | None, device: str) -> dict[str, Any]:
    """Quality-diversity curve (Caccia et al., 2020): BLEU, Self-BLEU and NLL_test at each temperature."""
    session = _RunSession(run_dir, checkpoint, protocol, device)
    points = []
    for temperature in temperatures:
        report, _ = session.report(("bleu", "self_bleu", "nll_test"), num_samples, seed, temperature)
        points.append({"temperature": temperature, **report})
    return {"protocol": protocol, "run": str(run_dir), "points": points}


class _RunSession:
    """A run's generator, corpus and text evaluator, loaded once for several reports."""

    def __init__(self, run_dir: Path, checkpoint: Path | None, protocol: str, device: str) -> None:
        self.config = load_run_config(run_dir)
        self.generator, tokenizer, _ = load_generator(run_dir, checkpoint)
        self.generator.to(device).eval()
        fast.apply(self.generator, setting=self.config.run.backend, device=device)
        # a pretrained model's tokenizer is the run's (its copy in the run directory)
        self.corpus = load_corpus(self.config.data, saved=run_dir,
                                  tokenizer=tokenizer if self.config.generator.pretrained else None)
        if self.corpus.oracle is not None:
            self.corpus.oracle.to(device)
        self.evaluator = TextEvaluator.for_corpus(self.corpus, protocol, self.config.eval.bleu_orders)
        self.checkpoint = checkpoint

    def report(self, metrics: Sequence[str], num_samples: int | None, seed: int | None,
               temperature: float) -> tuple[dict[str, Any], list[str]]:
        config = self.config
        with torch.no_grad():
            report, texts = generator_report(
                self.generator, self.corpus, metrics, num_samples=num_samples or config.eval.num_samples,
                batch_size=config.eval.batch_size, seed=config.run.seed if seed is None else seed,
                nll_batch_size=config.mle.batch_size, text_evaluator=self.evaluator, temperature=temperature,
            )
        report.setdefault("num_samples", num_samples or config.eval.num_samples)
        report["weights"] = str(self.checkpoint or "final export")
        return report, texts


def evaluate_files(samples: Path, references: Path, train: Path | None, protocol: str,
                   metrics: Sequence[str] | None, orders: Sequence[int] = (2, 3, 4, 5)) -> dict[str, Any]:
    """Text metrics of a samples file against a references file (and novelty against a training file)."""
    sample_lines = [line.strip() for line in read_text_lines(samples, "--samples") if line.strip()]
    reference_lines = [line.strip() for line in read_text_lines(references, "--references") if line.strip()]
    training = None
    if train is not None:
        training = [reference_words(line) for line in read_text_lines(train, "--train") if line.strip()]
    chosen = [m for m in (metrics or TEXT_METRICS) if m in TEXT_METRICS + ("fed",)]
    if not chosen:
        raise RelganError(f"--metrics: with --samples only {', '.join(TEXT_METRICS + ('fed',))} apply")
    return TextEvaluator(reference_lines, protocol, orders, training)(sample_lines, chosen)


def format_table(report: dict[str, Any]) -> str:
    """Two aligned columns: metric and value (numbers with 4 decimals)."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in report.items()
            if not isinstance(v, (list, dict))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_report(report: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, report)


def plot_sweep(curve: dict[str, Any], path: Path, order: int = 4) -> bool:
    """BLEU-n vs Self-BLEU-n and BLEU-n vs NLL_test over temperatures as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = curve["points"]
    bleu = [p.get(f"bleu-{order}") for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in ((axes[0], f"self-bleu-{order}", f"Self-BLEU-{order} (lower = more diverse)"),
                             (axes[1], "nll_test", "NLL_test (lower = better coverage)")):
        axis.plot([p.get(key) for p in points], bleu, marker="o")
        for p, y in zip(points, bleu):
            axis.annotate(f"τ={p['temperature']}", (p.get(key), y), fontsize=8)
        axis.set_xlabel(label)
        axis.set_ylabel(f"BLEU-{order}")
    fig.suptitle(f"quality-diversity, protocol {curve['protocol']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

