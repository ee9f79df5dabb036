"""The paper's multi-seed table on one machine: COCO RelGAN(100) at the paper's budget (150 MLE epochs, 2,000
iterations) for several seeds (``run.seeds``), under a wall-clock limit, resumable, then the table.

python -m experiments.paper_seeds --seeds 1,2,3,4,5,6 --limit 510 --output-dir /tmp/paper-seeds \
    data.train_file=<COCO train> data.test_file=<COCO test> [more overrides]

Each call trains (or continues, from the replicas' latest checkpoints) until ``--limit`` seconds, when SIGTERM
makes the run write a checkpoint and stop; call it again with the same arguments to go on (on a device: two
calls of at most 9 minutes, back to back, so that the machine and its disk stay). Every call then writes
``<output-dir>/<name>.{json,md}``: mean ± std over the seeds that finished, beside the paper's row, and where the
others are. As many seeds as fit: on one GPU the replicas train batched (``run.replicas=auto``: one vmapped pass
of all seeds per step), elsewhere one after another.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.entry import run
from relgan.bookkeeping import METRICS_FILE, last_reports
from relgan.checkpoint import complete_checkpoints
from relgan.io_utils import emit_json
from relgan.metrics.aggregate import summarise_seeds
from relgan.plugins import load_config

REPO = Path(__file__).resolve().parent.parent

# RelGAN paper, Table 2 (COCO, RelGAN(100)): mean and std over 6 seeds
PAPER = {"bleu-2": 0.849, "bleu-3": 0.687, "bleu-4": 0.502, "bleu-5": 0.331, "nll_gen": 0.756}
PAPER_STD = {"bleu-2": 0.030, "bleu-3": 0.047, "bleu-4": 0.048, "bleu-5": 0.044, "nll_gen": 0.054}


def train(args: argparse.Namespace, overrides: list[str]) -> dict:
    """Run ``relgan train`` until it ends or ``--limit`` seconds pass (then SIGTERM: checkpoint and exit)."""
    seeds = f"run.seeds=[{args.seeds}]"
    command = [sys.executable, "-m", "relgan", "train", "--config", args.config, seeds,
               f"run.output_dir={args.output_dir}", f"run.name={args.name}", *overrides]
    if (Path(args.output_dir) / args.name).is_dir():
        command.append("--resume")
    started = time.time()
    process = subprocess.Popen(command, cwd=REPO)
    try:
        code = process.wait(timeout=args.limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        code = process.wait()
    return {"command": command, "exit_code": code, "seconds": round(time.time() - started, 1)}


def table(args: argparse.Namespace, overrides: list[str]) -> dict:
    """Mean ± std of the last evaluation over the seeds that finished; the others' progress."""
    config = load_config(args.config, [f"run.seeds=[{args.seeds}]", *overrides])
    assert config.run.seeds is not None  # set just above
    finished, progress = {}, {}
    for seed in config.run.seeds:
        run = Path(args.output_dir) / args.name / f"seed-{seed}"
        reports = last_reports(run / METRICS_FILE)
        last = reports.get("adversarial")
        if last is not None and last["step"] == config.adversarial.steps:
            finished[seed] = last
        else:
            checkpoints = complete_checkpoints(run) if run.is_dir() else []
            progress[seed] = checkpoints[-1].name if checkpoints else "not started"
    metrics = {key: summarise_seeds([r[key] for r in finished.values()]) for key in PAPER
               if finished and all(isinstance(r.get(key), float) for r in finished.values())}
    return {"name": args.name, "budget": f"{config.mle.epochs} MLE epochs, {config.adversarial.steps} iterations",
            "finished_seeds": sorted(finished), "in_progress": progress, "metrics": metrics, "paper": PAPER,
            "paper_std": PAPER_STD}


def markdown(result: dict) -> str:
    lines = [f"### {result['name']}", "", f"Budget: {result['budget']}; seeds finished: "
             f"{result['finished_seeds'] or 'none'}; in progress: {result['in_progress'] or 'none'}.", "",
             "| row | " + " | ".join(PAPER) + " |", "|---|" + "---|" * len(PAPER),
             "| paper RelGAN(100), 6 seeds, mean ± std | "
             + " | ".join(f"{PAPER[k]:.3f} ± {PAPER_STD[k]:.3f}" for k in PAPER) + " |"]
    if result["finished_seeds"]:
        stats = [result["metrics"].get(key) for key in PAPER]
        cells = ["–" if s is None else f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["std"] is not None else "")
                 for s in stats]
        lines.append(f"| ours, {len(result['finished_seeds'])} seed(s), mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "coco_relgan100.yaml"))
    parser.add_argument("--seeds", default="1,2,3,4,5,6", help="comma-separated seeds")
    parser.add_argument("--limit", type=float, default=510, help="seconds of training in this call")
    parser.add_argument("--output-dir", required=True, help="where the runs and the table go")
    parser.add_argument("--name", default="coco-relgan100-paper-seeds")
    args, overrides = parser.parse_known_args()
    load_config(args.config, [f"run.seeds=[{args.seeds}]", *overrides])  # bad input: one line, before training
    session = train(args, overrides)
    result = {**table(args, overrides), "this_call": session}
    emit_json(result, str(Path(args.output_dir) / f"{args.name}.json"))
    (Path(args.output_dir) / f"{args.name}.md").write_text(markdown(result))


if __name__ == "__main__":
    run(main)
