"""The exact-gradient lab (relgan/gradient_lab.py): bias, variance, cosine and milliseconds per gradient of every
registered estimator against the exact gradient by enumeration, on two games, at beta 1, 5 and 20. JSON out, a
Markdown table, and a plot of bias and variance against beta per game (``plot`` extra).

    OMP_NUM_THREADS=1 python -m experiments.gradient_lab --out results/gradient-lab.json \
        --table results/gradient-lab.md --plot results/gradient-lab.png

Games: V = 6, T = 4 (1,296 sentences) with a fixed random discriminator, and V = 8, T = 6 (262,144 sentences) with
a discriminator trained 300 Adam steps against a target LSTM's samples, as a GAN's is; both an LSTM generator
(embedding 8, hidden 8). Objective E_{x ~ G}[sigmoid(D(one_hot(x)))]; each estimate averages a batch of 16
samples.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

import torch

from experiments.entry import run
from relgan.algorithms import Algorithm, registered
from relgan.fast.build import cpu_model
from relgan.gradient_lab import Lab, estimate, estimator_config, exact_gradient, make_lab
from relgan.io_utils import atomic_write_text, emit_json

BETAS = (1.0, 5.0, 20.0)
GAMES = {  # name -> make_lab's arguments
    "V=6 T=4, random D": {"vocab_size": 6, "seq_len": 4},
    "V=8 T=6, trained D": {"vocab_size": 8, "seq_len": 6, "trained_steps": 300},
}
COLUMNS = {
    "relative_error": "||mean - exact|| / ||exact||: the bias",
    "noise_floor": "the relative error an unbiased estimator shows from its variance alone: "
    "sqrt(variance / repeats) / ||exact||",
    "cosine": "of the mean and exact",
    "variance": "trace of one estimate's covariance",
    "relative_variance": "variance / ||exact||^2",
    "seconds_per_gradient": "one estimate",
}


def estimators() -> list[tuple[str, type[Algorithm], dict[str, Any], tuple[float, ...]]]:
    """Every registered algorithm's lab settings: (label, its class, its options, the betas it is measured at)."""
    return [
        (label, cls, options, BETAS if cls.relaxed else (1.0,))  # beta plays no part in REINFORCE's estimate
        for cls in registered().values()
        for label, options in cls.lab_estimators().items()
    ]


def measure(lab: Lab, repeats: int, batch_size: int, warmup: int) -> dict[str, Any]:
    """The game's description and every estimator's rows (one per beta)."""
    exact, objective = exact_gradient(lab)
    rows: dict[str, list[dict]] = {}
    for seed, (label, cls, options, betas) in enumerate(estimators()):
        rows[label] = []
        for i, beta in enumerate(betas):
            drawn = estimate(lab, estimator_config(cls.name, **options), beta=beta, batch_size=batch_size,
                             repeats=repeats, seed=100 * seed + i, warmup=warmup)
            rows[label].append({"beta": beta, "unbiased": cls.unbiased, **drawn.against(exact)})
    return {"vocab_size": lab.vocab_size, "seq_len": lab.generator.seq_len, "sentences": len(lab.sentences),
            "generator_weights": exact.numel(), "objective": objective, "exact_gradient_norm": exact.norm().item(),
            "estimators": rows}


def table(games: dict[str, dict]) -> str:
    """A Markdown table per game: one row per estimator and beta."""
    lines = []
    for name, game in games.items():
        lines += [f"**{name}** ({game['sentences']:,} sentences, {game['generator_weights']} weights)", "",
                  "| estimator | beta | bias (relative error) | noise floor | cosine | variance / norm² | ms |",
                  "|---|---|---|---|---|---|---|"]
        for label, rows in game["estimators"].items():
            for row in rows:
                beta = f"{row['beta']:g}" if len(rows) > 1 else "–"
                lines.append(f"| {label} | {beta} | {row['relative_error']:.3f} | {row['noise_floor']:.3f} | "
                             f"{row['cosine']:.3f} | {row['relative_variance']:.3f} | "
                             f"{1000 * row['seconds_per_gradient']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000, help="estimates per estimator")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200,
                        help="estimates that only train a learned control variate (REBAR, RELAX) before the recorded")
    parser.add_argument("--out")
    parser.add_argument("--table", help="Markdown table of every game")
    parser.add_argument("--plot", help="PNG of bias and variance against beta (needs the 'plot' extra)")
    args = parser.parse_args()
    if args.repeats < 2 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 2 (a variance needs two draws), --batch-size at least 1 and "
                     "--warmup at least 0")
    torch.set_num_threads(1)
    games = {name: measure(make_lab(**arguments), args.repeats, args.batch_size, args.warmup)
             for name, arguments in GAMES.items()}
    result = {"machine": platform.machine(), "cpu_model": cpu_model(), "torch": torch.__version__,
              "batch_size": args.batch_size, "repeats": args.repeats, "warmup": args.warmup, "columns": COLUMNS,
              "games": games}
    emit_json(result, args.out)
    if args.table:
        atomic_write_text(Path(args.table), table(games))
    if args.plot:
        plot(games, args.plot)


def plot(games: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(games), 2, figsize=(11, 4.2 * len(games)), squeeze=False)
    for row_axes, (name, game) in zip(axes, games.items(), strict=True):
        for axis, key, title in ((row_axes[0], "relative_error", "bias: ||mean - exact|| / ||exact||"),
                                 (row_axes[1], "relative_variance", "variance of one estimate / ||exact||^2")):
            for index, (label, drawn) in enumerate(game["estimators"].items()):
                colour = f"C{index % 10}"
                if len(drawn) > 1:  # swept over beta
                    axis.plot([r["beta"] for r in drawn], [r[key] for r in drawn], marker="o", label=label,
                              color=colour, linestyle="-" if index < 10 else ":")
                else:
                    axis.axhline(drawn[0][key], linestyle="--", linewidth=1, label=label, color=colour)
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_ylim(bottom=1e-3)  # an estimator whose gradient vanishes sits on the floor
            axis.set_xlabel("beta (inverse temperature of the relaxation)")
            axis.set_title(f"{name}: {title}", fontsize=9)
        row_axes[1].legend(fontsize=6, loc="upper left")
    figure.suptitle("Gradient estimators against the exact gradient (dashed: beta-free, at beta=1)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    run(main)
