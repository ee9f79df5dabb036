"""The class-conditional benchmark's table: class accuracy and per-class metrics after MLE and after adversarial
training, for a conditional run beside an unconditional one on the same labelled data.

python -m experiments.conditional_table --runs runs/conditional-coco-emnlp-reduced runs/unconditional-coco-emnlp-reduced \
    --command "..." --out results/conditional-coco-emnlp-cpu-reduced

Reads each run's metrics.jsonl (the last evaluation of each phase) and writes <out>.json (printed) and <out>.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from relgan.bookkeeping import METRICS_FILE, last_reports
from relgan.io_utils import emit_json

REPO = Path(__file__).resolve().parent.parent

PER_CLASS = ("class_accuracy", "bleu-2", "bleu-4", "self-bleu-4", "nll_test")


def run_rows(run: Path) -> list[dict]:
    """One row per phase (after MLE, after adversarial) of a run."""
    reports = last_reports(run / METRICS_FILE)
    rows = []
    for phase in ("mle", "adversarial"):
        if phase not in reports:
            continue
        report = reports[phase]
        row = {"run": run.name, "conditional": report["conditional"], "phase": phase, "step": report["step"],
               "class_accuracy": report["class_accuracy"],
               "classifier_test_accuracy": report["classifier_test_accuracy"]}
        for name, values in report["per_class"].items():
            row.update({f"{name}/{key}": values[key] for key in PER_CLASS if key in values})
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    rows = result["rows"]
    keys = [k for k in rows[0] if k not in ("run", "conditional", "phase", "step", "classifier_test_accuracy")]
    lines = [f"### {result['name']}", "", f"Command: `{result['command']}`", "",
             f"Classifier: {result['classifier']}; its accuracy on the real test split: "
             f"{rows[0]['classifier_test_accuracy']:.4f}.", "",
             "| model | after | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        model = "conditional" if row["conditional"] else "unconditional"
        after = f"{row['phase']} ({row['step']})"
        lines.append(f"| {model} | {after} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run directories (a conditional and an unconditional)")
    parser.add_argument("--command", required=True, help="the command that trained the runs, for the record")
    parser.add_argument("--out", required=True, help="output path without suffix")
    args = parser.parse_args()
    rows = [row for run in args.runs for row in run_rows(Path(run))]
    classifier = last_reports(Path(args.runs[0]) / METRICS_FILE)["mle"]["classifier"]
    result = {"name": Path(args.out).name, "command": args.command, "classifier": classifier, "rows": rows}
    emit_json(result, args.out + ".json")
    Path(args.out + ".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
