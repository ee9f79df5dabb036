"""Reproduce the paper's tables: MLE pretraining once, then RelGAN at each beta_max from that checkpoint.

python bench/reproduce.py --config configs/coco_relgan100.yaml --beta-max 100,1000 \
    --mle-epochs 20 --adversarial-steps 150 --eval-every 50 --seeds 171 --name coco-cpu

Every evaluation reports the ``relgan`` protocol (first 200 samples vs the whole test set) and the
``full`` protocol (all samples vs the whole test set, Self-BLEU over up to 5,000 samples). The table
(results/<name>.json and .md) gives, per seed and row, the last evaluation and the best one by a rule
fixed in advance: the adversarial evaluation with the largest full-protocol BLEU-4 minus Self-BLEU-4
(quality not bought with diversity; test BLEU alone never chooses). Synthetic configs report NLL_oracle
and its gap to the oracle's NLL on its own data; the best step there is the lowest NLL_oracle (the
benchmark's own metric, computed on samples, not on test data).

The MLE row is the pretrained generator at the same budget; RelGAN rows continue from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from relgan.config import load_config  # noqa: E402
from relgan.evaluation import TextEvaluator  # noqa: E402
from relgan.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from relgan.training import setup  # noqa: E402

TEXT_KEYS = [f"bleu-{n}" for n in (2, 3, 4, 5)] + [f"self-bleu-{n}" for n in (2, 3, 4, 5)]
NLL_KEYS = ["nll_gen", "nll_test"]


def train(config_path: str, overrides: list[str], resume: bool) -> dict:
    """Train (or continue) one run; every evaluation also gets the full protocol. Returns metrics records."""
    config = load_config(config_path, overrides)
    trainer = setup(config, resume="latest" if resume else None, overwrite=not resume)
    full = TextEvaluator.for_corpus(trainer.corpus, "full", config.eval.bleu_orders)
    if full is not None:
        relgan_report = trainer.book.evaluation_report

        def both_protocols(phase: str, step: int) -> dict:
            report = relgan_report(phase, step)
            samples = (trainer.run_dir / "samples" / f"{phase}-{step:06d}.txt").read_text().splitlines()
            extra = full(samples, ["bleu", "self_bleu"] + (["fed"] if "fed" in config.eval.metrics else []))
            report.update({f"full/{k}": v for k, v in extra.items()})
            return report

        trainer.book.evaluation_report = both_protocols
    trainer.fit()
    lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    return {"run_dir": str(trainer.run_dir), "records": [json.loads(line) for line in lines]}


def pick(records: list[dict], phase: str, synthetic: bool) -> dict[str, dict]:
    """The last evaluation of a phase and (adversarial) the best one by the rule in the module docstring."""
    rows = [r for r in records if r["phase"] == phase]
    chosen = {"last": rows[-1]}
    if phase == "adversarial":
        if synthetic:
            chosen["best"] = min(rows, key=lambda r: r["nll_oracle"])
        else:
            chosen["best"] = max(rows, key=lambda r: r["full/bleu-4"] - r["full/self-bleu-4"])
    return chosen


def summarise(record: dict, synthetic: bool, reference: float | None) -> dict:
    """The table's columns for one evaluation record."""
    if synthetic:
        row = {k: record.get(k) for k in ["nll_oracle", *NLL_KEYS]}
        row["nll_oracle_gap"] = record["nll_oracle"] - reference
    else:
        row = {k: record.get(k) for k in TEXT_KEYS + NLL_KEYS}
        row.update({f"full/{k}": record.get(f"full/{k}") for k in TEXT_KEYS})
        row["full/num_samples"] = record.get("full/num_samples")
        row["fed-minilm"] = record.get("full/fed-minilm")
    row["step"] = record["step"]
    if "beta" in record:
        row["beta"] = record["beta"]
    return row


def markdown(result: dict) -> str:
    synthetic = result["synthetic"]
    keys = (["nll_oracle", "nll_oracle_gap", "nll_gen", "nll_test"] if synthetic
            else ["bleu-2", "bleu-3", "bleu-4", "bleu-5", "self-bleu-4", "full/bleu-4", "full/self-bleu-4",
                  "nll_gen", "nll_test"])
    lines = [f"### {result['name']}", "",
             f"Budget: {result['budget']['mle_epochs']} MLE epochs, {result['budget']['adversarial_steps']} "
             f"adversarial iterations; seeds {result['seeds']}; machine: {result['machine']}"
             + (f"; {result['minutes']:.0f} min." if result["minutes"] is not None else "."), "",
             f"Command: `{result['command']}`", "",
             "| model | seed | row | step | " + " | ".join(keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    for row in result["rows"]:
        cells = [f"{row[k]:.3f}" if isinstance(row.get(k), float) else "–" for k in keys]
        lines.append(f"| {row['model']} | {row['seed']} | {row['row']} | {row['step']} | " + " | ".join(cells) + " |")
    if synthetic and result.get("oracle_reference") is not None:
        lines += ["", f"NLL_oracle of the oracle on its own test data: {result['oracle_reference']:.3f}."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--beta-max", default="100", help="comma-separated beta_max values, one RelGAN row each")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
    parser.add_argument("--mle-epochs", type=int)
    parser.add_argument("--adversarial-steps", type=int)
    parser.add_argument("--eval-every", type=int, help="adversarial iterations between evaluations")
    parser.add_argument("--mle-eval-every", type=int, help="MLE epochs between evaluations")
    parser.add_argument("--num-samples", type=int, help="samples per evaluation (full protocol uses all)")
    parser.add_argument("--name", required=True, help="results/<name>.json and .md")
    parser.add_argument("--output-dir", default="runs/reproduce")
    parser.add_argument("--collect", metavar="DIR",
                        help="build the table from DIR/<name>-s<seed>-{mle,relgan<beta>}.metrics.jsonl of an "
                             "earlier run (e.g. one copied back from another machine) instead of training")
    parser.add_argument("--machine", help="machine named in the table (default: this one)")
    parser.add_argument("--note", default="", help="a remark printed under the table")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (key=value)")
    args = parser.parse_args()

    base = load_config(args.config, args.overrides)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [base.run.seed]
    synthetic = base.data.source == "oracle"
    budget = {"mle_epochs": args.mle_epochs or base.mle.epochs,
              "adversarial_steps": args.adversarial_steps or base.adversarial.steps}
    common = [f"run.output_dir={args.output_dir}", f"mle.epochs={budget['mle_epochs']}", *args.overrides]
    if args.mle_eval_every:
        common += [f"mle.eval_every={args.mle_eval_every}", f"mle.checkpoint_every={args.mle_eval_every}"]
    if args.num_samples:
        common.append(f"eval.num_samples={args.num_samples}")
    adversarial = [f"adversarial.steps={budget['adversarial_steps']}", "gumbel.horizon=null"]
    if args.eval_every:
        adversarial += [f"adversarial.eval_every={args.eval_every}", f"adversarial.checkpoint_every={args.eval_every}"]

    def collected(run_name: str) -> dict:
        lines = (Path(args.collect) / f"{run_name}.metrics.jsonl").read_text().splitlines()
        return {"records": [json.loads(line) for line in lines]}

    started = time.time()
    rows, reference = [], None
    for seed in seeds:
        name = f"{args.name}-s{seed}"
        pretrain = collected(f"{name}-mle") if args.collect else train(
            args.config, [*common, f"run.seed={seed}", f"run.name={name}-mle", "adversarial.steps=0"], resume=False)
        reference = next((r["nll_oracle"] for r in pretrain["records"] if r["phase"] == "reference"), None)
        for row_name, record in pick(pretrain["records"], "mle", synthetic).items():
            rows.append({"model": "MLE", "seed": seed, "row": row_name, **summarise(record, synthetic, reference)})
        for beta_max in args.beta_max.split(","):
            branch = f"{name}-relgan{beta_max}"
            if args.collect:
                run = collected(branch)
            else:
                target = Path(args.output_dir) / branch
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(pretrain["run_dir"], target)  # continue from the same pretrained checkpoint
                run = train(args.config, [*common, *adversarial, f"run.seed={seed}", f"run.name={branch}",
                                          f"gumbel.beta_max={beta_max}"], resume=True)
            for row_name, record in pick(run["records"], "adversarial", synthetic).items():
                rows.append({"model": f"RelGAN({beta_max})", "seed": seed, "row": row_name,
                             **summarise(record, synthetic, reference)})
    device = args.machine or (torch.cuda.get_device_name() if torch.cuda.is_available()
                              else f"{platform.machine()} CPU, {os.cpu_count()} cores")
    result = {
        "name": args.name, "config": args.config, "synthetic": synthetic, "budget": budget, "seeds": seeds,
        "machine": device, "minutes": None if args.collect else (time.time() - started) / 60,
        "oracle_reference": reference, "note": args.note,
        "command": "python " + shlex.join(sys.argv), "rows": rows,
        "selection_rule": ("lowest NLL_oracle among adversarial evaluations" if synthetic else
                           "largest full-protocol BLEU-4 minus Self-BLEU-4 among adversarial evaluations"),
    }
    results = REPO / "results"
    atomic_write_json(results / f"{args.name}.json", result)
    atomic_write_text(results / f"{args.name}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
