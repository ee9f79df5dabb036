r"""The class-conditional benchmark's table: class accuracy and per-class metrics after MLE and after adversarial
training, for a conditional run beside an unconditional one on the same labelled data, and a row of real text.

python -m experiments.conditional_table \
    --runs runs/conditional-coco-emnlp-reduced runs/unconditional-coco-emnlp-reduced --command "..." \
    --out results/conditional-coco-emnlp-cpu-reduced

Reads each run's metrics.jsonl (the last evaluation of each phase) and writes <out>.json (printed) and <out>.md.
The rows are the last evaluation of each phase, a rule that reads no metric, so no held-out split is needed for
model selection. The real-text row is scored as the samples are: per class, as many training sentences of that
class as the runs drew samples (seed 0; the test sentences are the BLEU references, never hypotheses) for BLEU and
Self-BLEU, and the class's test sentences for class accuracy (the classifier was trained on the training split).
The rows' signatures must agree (a one-line error otherwise) and are printed once under the table.
"""

from __future__ import annotations

import argparse
import random
import shlex
from pathlib import Path

from experiments.commands import portable_command
from experiments.entry import run
from relgan.bookkeeping import METRICS_FILE, last_reports
from relgan.checkpoint import load_run_config
from relgan.compare import shared_signatures
from relgan.data import load_corpus
from relgan.errors import RelganError
from relgan.evaluation import CorpusEvaluation
from relgan.io_utils import atomic_write_text, emit_json
from relgan.metrics.classifier import class_accuracy

PER_CLASS = ("class_accuracy", "bleu-2", "bleu-4", "self-bleu-4", "nll_test")
REAL = "real text"


def run_rows(run: Path) -> list[dict]:
    """One row per phase (after MLE, after adversarial) of a run, with its per-class signatures."""
    reports = last_reports(run / METRICS_FILE)
    rows = []
    for phase in ("mle", "adversarial"):
        if phase not in reports:
            continue
        report = reports[phase]
        row = {
            "model": "conditional" if report["conditional"] else "unconditional",
            "run": run.name,
            "phase": phase,
            "step": report["step"],
            "class_accuracy": report["class_accuracy"],
            "classifier_test_accuracy": report["classifier_test_accuracy"],
            "signatures": {},
        }
        for name, values in report["per_class"].items():
            row.update({f"{name}/{key}": values[key] for key in PER_CLASS if key in values})
            row["signatures"].update(
                {f"{name}/{metric}": signature for metric, signature in values.get("signatures", {}).items()}
            )
        if not row["signatures"]:  # written before signatures: unsigned, not guessed
            row["signatures"] = None
        rows.append(row)
    return rows


def real_text_row(run: Path, num_samples: int) -> dict:
    """The columns of real text, class by class, scored as the run's samples are (see the module docstring)."""
    config = load_run_config(run)
    corpus = load_corpus(config.data, saved=run)
    evaluation = CorpusEvaluation(corpus, config.eval.protocol, config.eval.bleu_orders, ["bleu", "self_bleu"])
    classifier = evaluation.classifier()
    assert corpus.label_names is not None  # CorpusEvaluation.classifier refuses unlabelled text
    row: dict = {"model": REAL, "run": None, "phase": "held out", "step": None, "signatures": {}}
    accuracies = []
    for index, (name, part, evaluator) in enumerate(
        zip(corpus.label_names, evaluation.parts, evaluation.text_evaluators, strict=True)
    ):
        assert evaluator is not None and part.train_text is not None and part.test_text is not None
        texts = random.Random(0).sample(part.train_text, min(num_samples, len(part.train_text)))
        scored = evaluator(texts, ["bleu", "self_bleu"])
        accuracies.append(class_accuracy(classifier, part.test_text, index))
        row[f"{name}/class_accuracy"] = accuracies[-1]
        row.update({f"{name}/{key}": scored[key] for key in PER_CLASS if key in scored})
        row["signatures"].update({f"{name}/{metric}": signature for metric, signature in scored["signatures"].items()})
    row["class_accuracy"] = sum(accuracies) / len(accuracies)
    return row


def markdown(result: dict) -> str:
    rows = result["rows"]
    labels = ("model", "run", "phase", "step", "classifier_test_accuracy", "signatures")
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in labels))
    lines = [
        f"### {result['name']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Classifier: {result['classifier']}; its accuracy on the real test split: "
        f"{rows[0]['classifier_test_accuracy']:.4f}.",
        "",
        "| model | after | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for row in rows:
        after = row["phase"] if row["step"] is None else f"{row['phase']} ({row['step']})"
        cells = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else "–" for k in keys]
        lines.append(f"| {row['model']} | {after} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Real text: {result['real_text']}.",
        "",
        "Signatures (the same for every row): "
        + "; ".join(f"{key.split('/')[0]}: `{value}`" for key, value in sorted(result["signatures"].items()))
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run directories (a conditional and an unconditional)")
    parser.add_argument("--command", required=True, help="the command that trained the runs, for the record")
    parser.add_argument("--out", required=True, help="output path without suffix")
    args = parser.parse_args(argv)
    runs = [Path(run) for run in args.runs]
    for directory in runs:
        if "mle" not in last_reports(directory / METRICS_FILE):
            raise RelganError(
                f"--runs {directory}: no evaluation after MLE in {directory / METRICS_FILE}; give finished runs"
            )
    rows = [row for run in runs for row in run_rows(run)]
    first = last_reports(runs[0] / METRICS_FILE)["mle"]
    num_samples = next(iter(first["per_class"].values()))["num_samples"]
    rows.append(real_text_row(runs[0], num_samples))
    signatures = shared_signatures(rows, "the conditional table (its runs and the real-text row)")
    result = {
        "name": Path(args.out).name,
        "command": portable_command(shlex.split(args.command)),
        "classifier": first["classifier"],
        "real_text": f"per class, {num_samples} training sentences (seed 0) for BLEU and Self-BLEU against "
        "the class's test sentences; class accuracy on the class's test sentences, held out "
        "from the classifier",
        "signatures": signatures,
        "rows": rows,
    }
    emit_json(result, args.out + ".json")
    atomic_write_text(Path(args.out + ".md"), markdown(result))


if __name__ == "__main__":
    run(main)
