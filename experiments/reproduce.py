"""Reproduce the paper's tables over seeds and ask whether adversarial training helped.

python -m experiments.reproduce --config configs/demo.yaml --seeds 1,2,3 --beta-max 10 --name synthetic-verdict

For each seed: MLE pretraining once, then each --algorithms entry from that checkpoint: a relaxed algorithm
(relgan, straight-through, gumbel-rao) at each beta_max, a REINFORCE one (seqgan, maligan, with the standard loss
their rewards need) once. Runs that already exist under --output-dir are read (and resumed where they stopped
short of the budget), not retrained.

Every evaluation reports the ``relgan`` protocol (first 200 samples vs the whole test set) and the
``full`` protocol (all samples vs the whole test set, Self-BLEU over up to 5,000 samples). Per seed and
model the table gives the last evaluation and the best one by a rule fixed in advance that never reads the test
split nor the reported samples: with --validation-size held-out training sentences (data.validation_size) every
evaluation also scores an independent sample set (another seed), and the best adversarial evaluation is the one
whose selection samples have the largest BLEU-4 against the held-out sentences minus Self-BLEU-4 (quality not
bought with diversity); on the synthetic benchmark the lowest NLL_oracle of the selection samples. Its reported
test metrics are those computed once at that evaluation. The chosen evaluations get the LM judges (lm_score,
reverse_lm_score) and, with the 'fed' extra, FED and MAUVE, computed from their saved samples. A row of real
text under the same protocol and sample count stands beside the models: training sentences (the test set's
references never) on real data, the oracle's own samples on the synthetic benchmark.

Budgets: --mle-patience and --adversarial-patience (mle.patience, adversarial.patience; relgan/selection.py) run
each phase until that many evaluations bring no better model-selection value, the MLE phase then going back to its
best evaluation's weights (the row "MLE, best"); the epochs and iterations are then the most a phase may run, and
each row records what it trained. Tuning: one trial per row for MLE and every algorithm (the config's settings),
or --tune-mle and --tune-gan grids of as many trials each, every row's trial chosen on validation over the seeds
(experiments/tuning.py).

The verdict (relgan.compare): each seed's MLE generator is sampled under every --decoding rule (temperatures,
top-k, top-p) and reranked by a trained discriminator at each --rerank-alphas value (computed exactly on a
benchmark small enough to enumerate, else by resampling --rerank-candidates draws); seeds are aggregated (mean, std,
95% t interval, n) and each GAN row is checked for domination by some MLE point (the union of these frontiers) on
each quality-diversity plane. Writes results/<name>.json, <name>.md and <name>-<plane>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from experiments import tuning
from experiments.commands import portable_command
from experiments.entry import run

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from relgan import selection  # noqa: E402
from relgan.algorithms import algorithm_class  # noqa: E402
from relgan.assembly import setup  # noqa: E402
from relgan.checkpoint import complete_checkpoints, load_generator, load_run_config  # noqa: E402
from relgan.compare import (  # noqa: E402
    SYNTHETIC_PLANES,
    TEXT_PLANES,
    Plane,
    aggregate,
    beyond_frontier,
    dominance_rule,
    dominates,
    kendall_tau,
    measured_planes,
    plot_planes,
    shared_signatures,
    verdict_line,
    verdicts,
)
from relgan.data import load_corpus  # noqa: E402
from relgan.decoding import Decoding, parse_rules, rule_of  # noqa: E402
from relgan.errors import RelganError  # noqa: E402
from relgan.evaluation import TextEvaluator, corpus_judges  # noqa: E402
from relgan.fast.build import cpu_model  # noqa: E402
from relgan.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from relgan.metrics import registry  # noqa: E402
from relgan.metrics.embedding import fed_available  # noqa: E402
from relgan.metrics.exact import oracle_log_probs  # noqa: E402
from relgan.metrics.registry import Sampled  # noqa: E402
from relgan.models import Discriminator  # noqa: E402
from relgan.plugins import load_config  # noqa: E402
from relgan.report import decoding_sweep, reranked_sweep  # noqa: E402
from relgan.reranking import exact_reranked, reranking_signature  # noqa: E402

TEXT_KEYS = [f"bleu-{n}" for n in (2, 3, 4, 5)] + [f"self-bleu-{n}" for n in (2, 3, 4, 5)]
# the rows' names; run directories keep the algorithm's config name
CONTROL = " control"  # the row of an algorithm's control run: "SeqGAN control"


def gan_runs(name: str, algorithms: list[str], beta_maxes: list[str], overrides: list[str], controls: bool) -> dict:
    """model row -> (run name, config overrides) of every GAN of one seed, and with ``controls`` each one's control
    run (the discriminator's signal removed: adversarial.control=removed)."""
    runs = {}
    for algorithm in algorithms:
        cls = algorithm_class(algorithm)
        chosen = cls.overrides()
        if cls.relaxed:
            for beta_max in beta_maxes:
                run = f"{name}-relgan{beta_max}" if algorithm == "relgan" else f"{name}-{algorithm}{beta_max}"
                runs[f"{cls.row_label()}({beta_max})"] = (run, [*overrides, *chosen, f"gumbel.beta_max={beta_max}",
                                                               "gumbel.horizon=null"])
        else:
            runs[cls.row_label()] = (f"{name}-{algorithm}", [*overrides, *chosen])
    if controls:
        runs.update({model + CONTROL: (f"{run}-control", [*settings, "adversarial.control=removed"])
                     for model, (run, settings) in list(runs.items())})
    return runs


NLL_KEYS = ["nll_gen", "nll_test"]
EXACT_KEYS = ["exact_forward_kl", "exact_reverse_kl"]  # the exact benchmark's plane (an enumerable oracle)


def train(config_path: str, overrides: list[str]) -> dict:
    """Train one run, or continue it where it exists (a finished run returns at once); every evaluation also
    gets the full protocol. Returns the run directory and its metrics records."""
    config = load_config(config_path, overrides)
    assert config.run.name is not None  # load_config names a run after its config file
    run_dir = Path(config.run.output_dir) / config.run.name
    resume = run_dir.is_dir() and bool(complete_checkpoints(run_dir))
    started = time.time()
    trainer = setup(config, resume="latest" if resume else None, overwrite=not resume)
    full = TextEvaluator.for_corpus(trainer.corpus, "full", config.eval.bleu_orders)
    if full is not None:
        relgan_report = trainer.book.evaluation_report

        def both_protocols(phase: str, step: int) -> dict:
            report = relgan_report(phase, step)
            samples = (trainer.run_dir / "samples" / f"{phase}-{step:06d}.txt").read_text().splitlines()
            extra = full(samples, ["bleu", "self_bleu"])
            report.update({f"full/{k}": v for k, v in extra.items()})
            return report

        trainer.book.evaluation_report = both_protocols
    before = trainer.progress.global_step
    trainer.fit()
    if trainer.progress.global_step != before:  # time spent training this run, summed over invocations
        add_seconds(trainer.run_dir / "train-seconds.json", time.time() - started)
    lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    return {"run_dir": trainer.run_dir, "records": [json.loads(line) for line in lines]}


def recorded_seconds(path: Path) -> float:
    return json.loads(path.read_text())["seconds"] if path.exists() else 0.0


def add_seconds(path: Path, seconds: float) -> None:
    atomic_write_json(path, {"seconds": recorded_seconds(path) + seconds})


class Judging:
    """LM judges (and FED/MAUVE with the 'fed' extra) of saved evaluation samples, cached beside them."""

    def __init__(self, run_dir: Path) -> None:
        corpus = load_corpus(load_run_config(run_dir).data, saved=run_dir)
        self.judges = corpus_judges(corpus)
        self.full = TextEvaluator.for_corpus(corpus, "full", [4]) if fed_available() else None

    def score(self, samples: list[str]) -> dict:
        """The judges' scores (and FED/MAUVE) of sentences, with their signatures (``judged_signatures``)."""
        extra = registry.evaluate(Sampled(samples, [], judges=self.judges), ["lm"])
        signatures = extra.pop("signatures")
        if self.full is not None:
            fed = self.full(samples, ["fed"])
            signatures["full/fed"] = fed.pop("signatures")["fed"]
            extra.update({f"full/{k}": v for k, v in fed.items() if k in ("fed-minilm", "mauve", "fed_samples")})
        return {**extra, "judged_signatures": signatures}

    def __call__(self, run_dir: Path, record: dict) -> dict:
        cached = run_dir / "samples" / f"{record['phase']}-{record['step']:06d}.judged.json"
        if cached.exists():
            return {**record, **json.loads(cached.read_text())}
        started = time.time()
        samples = (run_dir / "samples" / f"{record['phase']}-{record['step']:06d}.txt").read_text().splitlines()
        extra = self.score(samples)
        atomic_write_json(cached, extra)
        add_seconds(run_dir / "judge-seconds.json", time.time() - started)
        return {**record, **extra}


def pick(records: list[dict], phase: str, synthetic: bool) -> dict[str, dict]:
    """The last evaluation of a phase and (adversarial) the best one by the rule in the module docstring, read
    from the model-selection values (``val/``) only; without them (data.validation_size 0) there is no best. An
    MLE phase with patience ends on its best evaluation's weights (relgan/selection.py): that row is "best".
    Each record gains ``trained``, the epochs or iterations the phase ran."""
    rows = [r for r in records if r["phase"] == phase]
    trained = rows[-1].get("stopped_at", rows[-1]["step"])
    if rows[-1].get("restored_best"):
        return {"best": {**rows[-1], "trained": trained}}
    chosen = {"last": rows[-1]}
    if phase == "adversarial" and all(SELECTION_KEY[synthetic] in r for r in rows):
        chosen["best"] = selection.best(rows, phase)
    return {name: {**record, "trained": trained} for name, record in chosen.items()}


SELECTION_KEY = {True: "val/nll_oracle", False: "val/bleu-4"}
REAL = "real text"  # the row of real text scored as samples are


def summarise(record: dict, synthetic: bool, reference: float | None) -> dict:
    """The table's columns for one evaluation record."""
    if synthetic:
        row = {k: record.get(k) for k in ["nll_oracle", *NLL_KEYS, *EXACT_KEYS]}
        row["nll_oracle_gap"] = record["nll_oracle"] - reference
    else:
        row = {k: record.get(k) for k in TEXT_KEYS + NLL_KEYS}
        row.update({f"full/{k}": record.get(f"full/{k}") for k in TEXT_KEYS})
        row["full/num_samples"] = record.get("full/num_samples")
        row["fed-minilm"] = record.get("full/fed-minilm")
        row["mauve"] = record.get("full/mauve")
    row.update({k: record.get(k) for k in ("lm_score", "reverse_lm_score")})
    row["step"] = record["step"]
    row["trained"] = record.get("trained")
    row["signatures"] = {**record.get("signatures", {}), **record.get("judged_signatures", {}),
                         **{f"full/{k}": v for k, v in record.get("full/signatures", {}).items()}}
    if "beta" in record:
        row["beta"] = record["beta"]
    return row


def plane_metrics(row: dict) -> dict:
    """A table row (or a full-protocol sweep point) in the keys of the verdict's planes."""
    keys = ["nll_oracle", "nll_test", "lm_score", "reverse_lm_score", *EXACT_KEYS]
    point = {k: row[k] for k in keys if row.get(k) is not None}
    for key in ("bleu-4", "self-bleu-4"):  # the full protocol's (a sweep point's are full already)
        value = row.get(f"full/{key}") if row.get(f"full/{key}") is not None else row.get(key)
        if value is not None:
            point[key] = value
    for key in ("fed-minilm", "mauve"):
        if row.get(key) is not None:
            point[key] = row[key]
    # the signatures of the plane's metrics: the full protocol's where a row has both (a sweep point has only it)
    signatures = row.get("signatures", {})
    point["signatures"] = {name: signatures.get(f"full/{name}", signatures[name] if name in signatures else None)
                           for name in ("bleu", "self_bleu", "nll_test", "nll_oracle", "lm", "fed", "exact")
                           if f"full/{name}" in signatures or name in signatures}
    return point


def gan_points(rows: list[dict]) -> dict[str, dict]:
    """The GAN rows of a table as points on the verdict's planes, one per model and row, aggregated over seeds."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["model"] not in ("MLE", REAL):
            groups.setdefault(f"{row['model']}, {row['row']}", []).append(plane_metrics(row))
    return {name: aggregate(points) for name, points in groups.items()}


def against_control(name: str, gans: dict[str, dict], planes: Sequence[Plane]) -> dict[str, bool] | None:
    """Plane -> whether the GAN row ``name`` ("SeqGAN, last") dominates its control's ("SeqGAN control, last");
    None without a control run."""
    model, _, row = name.rpartition(", ")
    control = gans.get(f"{model}{CONTROL}, {row}")
    if control is None:
        return None
    return {plane.name: dominates(gans[name], control, plane) for plane in planes}


def draw(result: dict) -> list[Path]:
    """The plane plots of a results table, results/<name>-<plane>.png: the MLE curve of each family of decoding
    rules, the GAN rows and real text."""
    planes = SYNTHETIC_PLANES if result["synthetic"] else TEXT_PLANES
    sweep = {rule_of(p): p["metrics"] for p in result["sweep"]}
    real = [plane_metrics(row) for row in result["rows"] if row["model"] == REAL]
    title = f"{result['name']}: MLE decoding sweep vs GAN, {len(result['seeds'])} seed(s)"
    return plot_planes(sweep, gan_points(result["rows"]), planes, REPO / "results" / result["name"], title,
                       real=aggregate(real, "the real-text rows") if real else None,
                       others=result.get("reranked", {}).get("points"))


def fmt(summary: dict | None) -> str:
    if not summary:
        return "–"
    if summary["ci95"] is None:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} ± {summary['ci95']:.3f}"


def markdown(result: dict) -> str:
    synthetic = result["synthetic"]
    planes = SYNTHETIC_PLANES if synthetic else TEXT_PLANES
    keys = (["nll_oracle", "nll_oracle_gap", "nll_gen", "nll_test", "lm_score", "reverse_lm_score", *EXACT_KEYS]
            if synthetic
            else ["bleu-4", "full/bleu-4", "full/self-bleu-4", "nll_gen", "nll_test", "lm_score",
                  "reverse_lm_score", "fed-minilm", "mauve"])
    lines = [f"### {result['name']}", "",
             f"Budget: {budget_text(result['budget'])}"
             f"{' (reduced: ' + result['reduced'] + ')' if result.get('reduced') else ''}; seeds {result['seeds']}; "
             f"{result['num_samples']} samples per evaluation; machine: {result['machine']}"
             + f"; {result['minutes']:.0f} min of training, judging and sweeps (all runs, summed).", "",
             f"Tuning: {result.get('tuning') or tuning.description('', '', 1, synthetic)}", "",
             *trials_table(result.get("trials", {})),
             f"Command: `{result['command']}`", "",
             (f"LM judges: {result['lm_judge']}; lm_score of the real test split: {result['lm_score_of_test']:.3f}."
              if result["lm_judge"] else "Collected metrics: no LM judges, no decoding sweep."), "",
             "#### Verdict", "", dominance_rule(len(result["seeds"])), ""]
    lines += [f"- {line}" for line in result["verdict_lines"]]
    taus = [f"{k}: {v:+.2f}" for k, v in result["judge_agreement"].items() if v is not None]
    if taus:
        lines += ["", "Do the LM judges order the evaluated points (every seed's rows and decoding rules) as the "
                  f"reference metrics do? Kendall's tau: {'; '.join(taus)} (lower lm_score should go with lower "
                  "NLL_oracle, +1, or higher BLEU, -1)."]
    keys = [k for k in keys if any(group["metrics"].get(k) for group in result["aggregate"])]  # what was measured
    lines += ["", "#### Mean ± 95% interval over seeds", "",
              "| model | row | n | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for group in result["aggregate"]:
        stats = group["metrics"]
        n = max((s["n"] for s in stats.values()), default=0)
        cells = " | ".join(fmt(stats.get(k)) for k in keys)
        lines.append(f"| {group['model']} | {group['row']} | {n} | {cells} |")
    lines += ["", "Signatures (the same for every row and decoding rule of the verdict): "
              + "; ".join(f"`{value}`" for value in result.get("signatures", {}).values()) + "."]
    lines += ["", f"The best row: {result['selection_rule']}." if any(r["row"] == "best" for r in result["rows"])
              else "No best row: the runs held out no training sentences for model selection."]
    sweep_keys = sorted({k for plane in planes for k in (plane.quality.key, plane.diversity.key)
                         if any(point["metrics"].get(k) for point in result["sweep"])})
    lines += ["", "#### MLE under each decoding rule (full protocol), mean ± 95% interval", "",
              "| rule | " + " | ".join(sweep_keys) + " |", "|---|" + "---|" * len(sweep_keys)]
    for point in result["sweep"]:
        lines.append(f"| {rule_of(point).label} | " + " | ".join(fmt(point["metrics"].get(k)) for k in sweep_keys)
                     + " |")
    reranking = result.get("reranked", {})
    if reranking.get("points"):
        candidates = reranking.get("candidates")
        how = ("in the limit of many candidates (exact)" if candidates is None else
               f"{result['num_samples']} sentences drawn from {candidates} candidates (SIR; no NLL_test: the resampled "
               "sentences are no one generator's samples)")
        reranked_keys = [k for k in sweep_keys if any(k in stats for stats in reranking["points"].values())]
        lines += ["", "#### MLE reranked by a trained discriminator, mean ± 95% interval", "",
                  f"Each seed's MLE generator, resampled in proportion to exp(alpha d(x)), {how}; d a discriminator "
                  f"of the config's sizes trained {reranking['reranker_steps']} Adam steps on real sentences against "
                  "the generator's samples (relgan/reranking.py). These points join the frontier of the verdict on "
                  "every plane where they have both axes.", "", "| rule | " + " | ".join(reranked_keys) + " |",
                  "|---|" + "---|" * len(reranked_keys)]
        for label, stats in reranking["points"].items():
            lines.append(f"| {label} | " + " | ".join(fmt(stats.get(k)) for k in reranked_keys) + " |")
    if result["plots"]:
        lines += ["", "Plots: " + ", ".join(f"[{Path(p).name}]({Path(p).name})" for p in result["plots"]) + "."]
    lines += ["", "#### Per seed", "", "Step: the evaluation of the row; trained: the epochs (MLE) or iterations its "
              "phase ran.", "", "| model | seed | row | step | trained | " + " | ".join(keys) + " |",
              "|---|---|---|---|---|" + "---|" * len(keys)]
    for row in result["rows"]:
        values = " | ".join(f"{row[k]:.3f}" if isinstance(row.get(k), float) else "–" for k in keys)
        trained = row.get("trained") if row.get("trained") is not None else "–"
        lines.append(f"| {row['model']} | {row['seed']} | {row['row']} | {row['step']} | {trained} | {values} |")
    if synthetic and result.get("oracle_reference") is not None:
        lines += ["", f"NLL_oracle of the oracle on its own test data: {result['oracle_reference']:.3f}."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def trials_table(trials: dict[str, dict]) -> list[str]:
    """The markdown lines of each row's tuning trials in ascending order of their values (``t<k>``: the trial's
    index in the grid and in its run's name), each with its mean validation value, the chosen one in bold."""
    if not trials:
        return []
    count = len(next(iter(trials.values()))["settings"])
    lines = ["| row | trials, ascending |" + " |" * (count - 1), "|---|" + "---|" * count]
    for model, found in trials.items():
        cells = [f"t{k} {setting}: {value:.4f}" for k, (setting, value) in
                 enumerate(zip(found["settings"], found["mean_validation_value"], strict=True))]
        cells[found["chosen"]] = f"**{cells[found['chosen']]}**"
        lines.append(f"| {model} | " + " | ".join(cells[k] for k in tuning.ascending(found["settings"])) + " |")
    lines += ["", "Each cell: the trial (`t<k>` in its run's name), its settings and the mean over the seeds of its "
              "best validation value (higher is better; the negated NLL where the rule is a lowest NLL).", ""]
    edges = {model: tuning.grid_edges(found["settings"], found["chosen"]) for model, found in trials.items()
             if len(set(found["mean_validation_value"])) > 1}  # where every trial ties, the grid changed nothing
    if any(edges.values()):
        lines += ["Chosen at the edge of the grid, so the grid did not bracket the best setting and a wider one may "
                  "find a better: " + "; ".join(f"{model}, {', '.join(found)}" for model, found in edges.items()
                                                if found) + ".", ""]
    return lines


def budget_text(budget: dict) -> str:
    """The budget line of a results table: the most each phase may run and, with patience, when it stops."""
    mle = f"{budget['mle_epochs']} MLE epochs"
    if budget.get("mle_patience"):
        mle = (f"MLE until {budget['mle_patience']} evaluations ({budget['mle_eval_every']} epochs apart) bring no "
               f"lower validation NLL, at most {budget['mle_epochs']} epochs; the best evaluation's weights are the "
               "MLE baseline")
    adversarial = f"{budget['adversarial_steps']} adversarial iterations"
    if budget.get("adversarial_patience"):
        adversarial = (f"each GAN until {budget['adversarial_patience']} evaluations ({budget['eval_every']} "
                       "iterations apart) bring no better model-selection value (the best row's rule), at most "
                       f"{budget['adversarial_steps']} iterations")
    return f"{mle}; {adversarial}"


def real_text(run_dir: Path, num_samples: int, judging: Judging, synthetic: bool, reference: float | None) -> dict:
    """The table's columns for real text scored as samples are: ``num_samples`` training sentences (seed 0; the
    test sentences are the references, never hypotheses), or on the synthetic benchmark the oracle's own samples
    (whose NLL_test is the oracle's NLL on the test data)."""
    corpus = load_corpus(load_run_config(run_dir).data, saved=run_dir)
    if corpus.oracle is not None:
        ids = corpus.oracle.sample(num_samples, torch.Generator().manual_seed(0))
        texts = corpus.decode(ids)
        record = {"nll_oracle": corpus.oracle.nll(ids), "nll_test": corpus.oracle.nll(corpus.test_ids),
                  "signatures": {"nll_oracle": registry.sign("nll_oracle", "oracle samples", f"n:{num_samples}"),
                                 "nll_test": registry.sign("nll_test", "the oracle", f"rows:{len(corpus.test_ids)}")}}
    else:
        assert corpus.train_text is not None  # a text corpus keeps its lines
        texts = random.Random(0).sample(corpus.train_text, min(num_samples, len(corpus.train_text)))
        record = {}
        for protocol, prefix in (("relgan", ""), ("full", "full/")):
            evaluate = TextEvaluator.for_corpus(corpus, protocol, [2, 3, 4, 5])
            assert evaluate is not None  # a text corpus has its evaluator
            scored = evaluate(texts, ["bleu", "self_bleu"])
            record.update({f"{prefix}{k}": v for k, v in scored.items()})
    record.update(judging.score(texts))
    return {**summarise({**record, "step": 0}, synthetic, reference), "step": None}


def branch_from(pretrained: str, branch: str, output_dir: str) -> None:
    """Start a RelGAN run from the MLE run's last checkpoint (not its export, sweep or timings), once."""
    target = Path(output_dir) / branch
    if not target.exists():
        skip = shutil.ignore_patterns("generator", "sweep-*", "*-seconds.json")
        shutil.copytree(Path(output_dir) / pretrained, target, ignore=skip)


def obtain(model: str, run_name: str, overrides: list[str], collect: str | None, config: str, output_dir: str,
           mle_run: str) -> dict:
    """One run's directory and records: its metrics copied back from another machine (``collect``; no directory),
    or trained, continued or read here (a GAN branching from its seed's MLE run ``mle_run``)."""
    if collect:
        lines = (Path(collect) / f"{run_name}.metrics.jsonl").read_text().splitlines()
        return {"run_dir": None, "records": [json.loads(line) for line in lines]}
    if model != "MLE":
        branch_from(mle_run, run_name, output_dir)
    return train(config, [*overrides, f"run.name={run_name}"])


def reranked(run_dir: Path, alphas: list[float], steps: int, seed: int, exact: str | None, candidates: int,
             num_samples: int) -> tuple[dict[str, dict], float]:
    """MLE reranked by a discriminator trained ``steps`` steps on real sentences against the run's generator
    (relgan/reranking.py), per alpha ("reranked alpha=1" -> its plane metrics and signatures; cached in the run),
    and the seconds they took: on an enumerable benchmark (``exact``: the run's exact signature) the exact
    divergences of q_alpha, the limit of many candidates; elsewhere the full-protocol metrics of ``num_samples``
    sentences resampled from ``candidates`` draws (SIR), which have no NLL_test."""
    name = f"reranked-{steps}.json" if exact else f"reranked-sir-{candidates}-{num_samples}-{steps}.json"
    path = run_dir / name
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("alphas") != alphas:
        started = time.time()
        if exact:
            found = {alpha: {**values, "signatures": {"exact": exact}}
                     for alpha, values in _exact_reranked(run_dir, alphas, steps, seed).items()}
        else:
            sweep = reranked_sweep(run_dir, "full", alphas, candidates, steps, num_samples, seed)
            found = {point["alpha"]: plane_metrics(point) for point in sweep["points"]}
        cached = {"alphas": alphas, "seconds": time.time() - started,
                  "points": {f"reranked alpha={alpha:g}": point for alpha, point in found.items()}}
        atomic_write_json(path, cached)
    how = reranking_signature(steps, None if exact else candidates)
    return ({label: {**point, "signatures": {**point["signatures"], "reranking": how}}
             for label, point in cached["points"].items()}, cached["seconds"])


def _exact_reranked(run_dir: Path, alphas: list[float], steps: int, seed: int) -> dict[float, dict[str, float]]:
    """The exact divergences of the run's generator reranked at each alpha (relgan.reranking.exact_reranked)."""
    config = load_run_config(run_dir)
    generator, _, _ = load_generator(run_dir)
    corpus = load_corpus(config.data, saved=run_dir)
    assert corpus.oracle is not None  # the caller checked that the benchmark is enumerable
    torch.manual_seed(seed)
    discriminator = Discriminator(config.discriminator, corpus.vocab_size, corpus.seq_len)
    return exact_reranked(generator.eval(), discriminator, oracle_log_probs(corpus.oracle), corpus.train_ids,
                          corpus.vocab_size, tuple(alphas), steps, seed)


def swept(run_dir: Path, rules: list[Decoding], num_samples: int, seed: int) -> tuple[list[dict], float]:
    """The MLE generator's full-protocol report under each decoding rule (cached in the run) and its seconds."""
    path = run_dir / f"sweep-{num_samples}.json"
    cached = json.loads(path.read_text()) if path.exists() else {"points": []}
    if [rule_of(p) for p in cached["points"]] != rules:
        started = time.time()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        cached = decoding_sweep(run_dir, None, "full", rules, num_samples, seed, device)
        cached["seconds"] = time.time() - started
        atomic_write_json(path, cached)
    return cached["points"], cached.get("seconds", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--algorithms", default="relgan",
                        help="comma-separated adversarial.algorithm values (relaxed ones once per beta_max)")
    parser.add_argument("--controls", action="store_true",
                        help="also train each algorithm's control run (the discriminator's signal removed); a row "
                             "counts as a gain only where it beats its control")
    parser.add_argument("--beta-max", default="100", help="comma-separated beta_max values, one row each per relaxed "
                                                          "algorithm")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
    parser.add_argument("--mle-epochs", type=int)
    parser.add_argument("--adversarial-steps", type=int)
    parser.add_argument("--mle-patience", type=int,
                        help="mle.patience: stop MLE after this many evaluations without a lower validation NLL and "
                             "keep the best evaluation's weights (default: the config's)")
    parser.add_argument("--adversarial-patience", type=int,
                        help="adversarial.patience: stop a GAN after this many evaluations without a better "
                             "model-selection value (default: the config's)")
    parser.add_argument("--eval-every", type=int, help="adversarial iterations between evaluations")
    parser.add_argument("--mle-eval-every", type=int, help="MLE epochs between evaluations")
    parser.add_argument("--num-samples", type=int, help="samples per evaluation (full protocol uses all)")
    parser.add_argument("--validation-size", type=int, default=1000,
                        help="training sentences held out for model selection (data.validation_size; 0: no best row)")
    parser.add_argument("--decoding", "--temperatures", dest="decoding",
                        default="0.6,0.8,1.0,1.2,1.4,k=10,k=40,p=0.8,p=0.9,p=0.95",
                        help="decoding rules of the MLE sweep, whose union is the verdict's frontier: temperatures "
                             "and T=, k=, p= settings joined by ':' (0.8,1.0,k=40,p=0.9; relgan/decoding.py)")
    parser.add_argument("--rerank-alphas", default="0.25,0.5,1,1.5,2",
                        help="MLE reranked by a trained discriminator joins the frontier at each alpha "
                             "(relgan/reranking.py: exactly on an enumerable benchmark, else by resampling "
                             "--rerank-candidates draws); '' for none")
    parser.add_argument("--reranker-steps", type=int, default=1000, help="Adam steps of the reranking discriminator")
    parser.add_argument("--rerank-candidates", type=int,
                        help="draws resampled into each reranked sample set (default: 10 x --num-samples)")
    parser.add_argument("--tune-mle", default="",
                        help="MLE's tuning grid, KEY=V1,V2[;KEY=...] (experiments/tuning.py): one trial per "
                             "combination, chosen on validation; as many trials as --tune-gan")
    parser.add_argument("--tune-gan", default="",
                        help="every GAN row's (and control's) tuning grid, as many trials as --tune-mle")
    parser.add_argument("--tune-gan-by", choices=sorted(tuning.GAN_RULES), default="selection",
                        help="choose GAN trials by the GAN's own selection rule (relgan/selection.py), or by MLE's: "
                        "the lowest validation NLL of the held-out sentences")
    parser.add_argument("--name", required=True, help="the runs' names, and results/<name>.json, .md, -<plane>.png")
    parser.add_argument("--table-name", help="results/<table-name>.* instead: another table of the same runs")
    parser.add_argument("--output-dir", default="runs/reproduce", help="where the runs are (read or written)")
    parser.add_argument("--collect", metavar="DIR",
                        help="build the table from DIR/<name>-s<seed>-{mle,relgan<beta>}.metrics.jsonl copied back "
                             "from another machine instead of training (no LM judges, no sweep, no verdict)")
    parser.add_argument("--machine", help="machine named in the table (default: this one)")
    parser.add_argument("--reduced", default="", help="how the budget is reduced from the paper's, for the table")
    parser.add_argument("--note", default="", help="a remark printed under the table")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (key=value)")
    args = parser.parse_args()

    base = load_config(args.config, args.overrides)
    seeds = _seeds(args.seeds) if args.seeds else [base.run.seed]
    try:
        rules = parse_rules(args.decoding)
    except ValueError as exc:
        raise RelganError(f"--decoding: {exc}") from None
    synthetic = base.data.source == "oracle"
    planes = SYNTHETIC_PLANES if synthetic else TEXT_PLANES
    budget = {"mle_epochs": args.mle_epochs or base.mle.epochs,
              "adversarial_steps": args.adversarial_steps or base.adversarial.steps,
              "mle_patience": base.mle.patience if args.mle_patience is None else args.mle_patience,
              "adversarial_patience": (base.adversarial.patience if args.adversarial_patience is None
                                       else args.adversarial_patience),
              "mle_eval_every": args.mle_eval_every or base.mle.eval_every,
              "eval_every": args.eval_every or base.adversarial.eval_every}
    num_samples = args.num_samples or base.eval.num_samples
    common = [f"run.output_dir={args.output_dir}", f"mle.epochs={budget['mle_epochs']}",
              f"mle.patience={budget['mle_patience']}",
              f"eval.num_samples={num_samples}", f"data.validation_size={args.validation_size}", *args.overrides]
    if args.mle_eval_every:
        common += [f"mle.eval_every={args.mle_eval_every}", f"mle.checkpoint_every={args.mle_eval_every}"]
    adversarial = [f"adversarial.steps={budget['adversarial_steps']}",
                   f"adversarial.patience={budget['adversarial_patience']}"]
    if args.eval_every:
        adversarial += [f"adversarial.eval_every={args.eval_every}", f"adversarial.checkpoint_every={args.eval_every}"]

    mle_grid, gan_grid = tuning.parse_grid(args.tune_mle, "--tune-mle"), tuning.parse_grid(args.tune_gan, "--tune-gan")
    trials = len(mle_grid)
    if len(gan_grid) != trials:
        raise RelganError(f"--tune-mle gives {trials} trials and --tune-gan {len(gan_grid)}: the same tuning effort "
                          "for MLE and every GAN needs as many of each")
    if trials == 1 and args.tune_gan_by != "selection":
        raise RelganError(f"--tune-gan-by {args.tune_gan_by}: there are no GAN trials to choose among; give "
                          "--tune-mle and --tune-gan grids")
    if trials > 1 and (args.collect or args.validation_size <= 0):
        raise RelganError("--tune-mle/--tune-gan: trials are chosen on held-out sentences (--validation-size > 0) "
                          "from runs trained here (not --collect)")
    alphas = [float(alpha) for alpha in args.rerank_alphas.split(",")] if args.rerank_alphas else []
    candidates = args.rerank_candidates or 10 * num_samples
    if candidates < num_samples:
        raise RelganError(f"--rerank-candidates {candidates}: resample from at least --num-samples ({num_samples}) "
                          "draws")
    rows: list[dict] = []
    sweeps: list[list[dict]] = []
    reranks: list[dict[str, dict]] = []
    seconds, reference, judging = 0.0, None, None
    exact: str | None = None  # the MLE runs' exact signature, on an enumerable benchmark
    runs_of_seed = {seed: {"MLE": (f"{args.name}-s{seed}-mle", [*common, f"run.seed={seed}", "adversarial.steps=0"]),
                           **gan_runs(f"{args.name}-s{seed}", args.algorithms.split(","), args.beta_max.split(","),
                                      [*common, *adversarial, f"run.seed={seed}"], args.controls)}
                    for seed in seeds}
    trained, chosen, trial_values = tuning.run_trials(
        runs_of_seed, mle_grid, gan_grid,
        lambda model, run_name, overrides, mle_run: obtain(model, run_name, overrides, args.collect, args.config,
                                                           args.output_dir, mle_run),
        args.tune_gan_by)
    seconds += sum(recorded_seconds(run["run_dir"] / "train-seconds.json")
                   for runs in trained.values() for run in runs if run["run_dir"] is not None)
    for seed in seeds:
        for model in runs_of_seed[seed]:
            run = trained[seed, model][chosen[model]]
            if run["run_dir"] is not None:
                judging = judging or Judging(run["run_dir"])
            if model == "MLE":
                run_dir_of_mle = run["run_dir"]
                reference = next((r["nll_oracle"] for r in run["records"] if r["phase"] == "reference"), None)
                if not args.collect:
                    points, spent = swept(run["run_dir"], rules, num_samples, seed)
                    sweeps.append(points)
                    seconds += spent
                    exact = run["records"][-1].get("signatures", {}).get("exact")
                    if alphas:
                        reranks_of_seed, spent = reranked(run["run_dir"], alphas, args.reranker_steps, seed, exact,
                                                          candidates, num_samples)
                        reranks.append(reranks_of_seed)
                        seconds += spent
            for row_name, record in pick(run["records"], "mle" if model == "MLE" else "adversarial",
                                         synthetic).items():
                if judging is not None:
                    record = judging(run["run_dir"], record)
                rows.append({"model": model, "seed": seed, "row": row_name, **summarise(record, synthetic, reference)})
            if judging is not None:
                seconds += recorded_seconds(run["run_dir"] / "judge-seconds.json")
    if judging is not None:  # real text under the same protocol and sample count, beside the models
        rows.append({"model": REAL, "seed": None, "row": "held out",
                     **real_text(run_dir_of_mle, num_samples, judging, synthetic, reference)})
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["row"]), []).append(row)
    aggregated = [{"model": model, "row": row_name, "metrics": aggregate(members)}
                  for (model, row_name), members in groups.items()]
    sweep: list[dict[str, Any]] = [
        {"decoding": rule.label, **asdict(rule), "metrics": aggregate([plane_metrics(points[i]) for points in sweeps])}
        for i, rule in enumerate(rules) if sweeps]
    gans = gan_points(rows)
    sweep_points = {rule_of(p): p["metrics"] for p in sweep}
    reranked_points = {label: aggregate([seed_points[label] for seed_points in reranks], f"MLE, {label}")
                       for label in (reranks[0] if reranks else {})}
    # every evaluated point of every seed (sweep and rows): do the judges order them as the references do?
    evaluated = [plane_metrics(r) for r in rows if r["model"] != REAL] + [plane_metrics(p) for points in sweeps
                                                                          for p in points] + [
        point for seed_points in reranks for point in seed_points.values()]
    signatures = shared_signatures(evaluated, "the verdict (the GAN rows and the MLE sweep)")
    agreement = {f"{judge} vs {truth}": kendall_tau([(e[judge], e[truth]) for e in evaluated
                                                     if judge in e and truth in e])
                 for judge, truth in (("lm_score", "nll_oracle" if synthetic else "bleu-4"),
                                      ("reverse_lm_score", "nll_test"))}
    measured = measured_planes(planes, sweep_points)
    found = verdicts(sweep_points, gans, measured, reranked_points)
    machine = args.machine or (torch.cuda.get_device_name() if torch.cuda.is_available()
                               else f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores")
    result = {
        "name": args.table_name or args.name, "config": args.config, "synthetic": synthetic, "budget": budget,
        "seeds": seeds,
        "algorithms": args.algorithms.split(","),
        "num_samples": num_samples, "reduced": args.reduced, "machine": machine,
        "minutes": seconds / 60, "oracle_reference": reference, "note": args.note,
        "command": portable_command(["python", "-m", "experiments.reproduce", *sys.argv[1:]]), "rows": rows,
        "aggregate": aggregated, "sweep": sweep, "verdicts": found,
        "reranked": {"alphas": alphas, "reranker_steps": args.reranker_steps, "points": reranked_points,
                     "candidates": None if exact else candidates},
        "judge_agreement": agreement,
        "verdict_lines": [verdict_line(name, found[name], measured, against_control(name, gans, measured),
                                       {plane.name: beyond_frontier(sweep_points, gans[name], plane, reranked_points)
                                        for plane in measured})
                          for name in gans if CONTROL not in name],
        "lm_judge": judging.judges.spec.describe() if judging else None,
        "lm_score_of_test": judging.judges.test_score() if judging else None,
        "signatures": {**signatures,
                       "tuning": tuning.signature(args.tune_mle, args.tune_gan, trials, args.tune_gan_by)},
        "tuning": tuning.description(args.tune_mle, args.tune_gan, trials, synthetic, args.tune_gan_by),
        "trials": {model: {"settings": [" ".join(t) for t in (mle_grid if model == "MLE" else gan_grid)],
                           "mean_validation_value": trial_values[model], "chosen": chosen[model]}
                   for model in trial_values},
        "selection_rule": selection.rule("adversarial", synthetic),
    }
    result["plots"] = [str(p.relative_to(REPO)) for p in draw(result)]
    results = REPO / "results"
    atomic_write_json(results / f"{result['name']}.json", result)
    atomic_write_text(results / f"{result['name']}.md", markdown(result))
    print(markdown(result))


def _seeds(text: str) -> list[int]:
    """--seeds: comma-separated integers >= 0, each once."""
    try:
        seeds = [int(seed) for seed in text.split(",")]
    except ValueError:
        raise RelganError(f"--seeds {text!r}: give comma-separated integers, e.g. 1,2,3") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise RelganError(f"--seeds {text!r}: each seed an integer >= 0, and each once")
    return seeds


if __name__ == "__main__":
    run(main)
