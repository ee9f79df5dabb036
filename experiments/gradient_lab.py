"""The exact-gradient lab (relgan/gradient_lab.py): bias, variance and seconds per gradient of every estimator
against the exact gradient by enumeration, JSON out, and a plot of bias and variance against beta (``plot`` extra).

    OMP_NUM_THREADS=1 python -m experiments.gradient_lab --out results/gradient-lab.json --plot results/gradient-lab.png

Game: V = 6, T = 4 (1,296 sentences), an LSTM generator (embedding 8, hidden 8: 646 weights), a fixed random
discriminator; objective E_{x ~ G}[sigmoid(D(one_hot(x)))]. Each estimate averages a batch of 16 samples.
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import torch

from relgan.algorithms import Algorithm, registered
from relgan.fast.build import cpu_model
from relgan.gradient_lab import estimate, estimator_config, exact_gradient, make_lab
from relgan.io_utils import emit_json

BETAS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def estimators() -> list[tuple[str, type[Algorithm], dict[str, Any], tuple[float, ...]]]:
    """Every registered algorithm's lab settings: (label, its class, its options, the betas it is measured at)."""
    return [
        (label, cls, options, BETAS if cls.relaxed else (1.0,))  # beta plays no part in REINFORCE's estimate
        for cls in registered().values()
        for label, options in cls.lab_estimators().items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000, help="estimates per estimator")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out")
    parser.add_argument("--plot", help="PNG of bias and variance against beta (needs the 'plot' extra)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lab = make_lab()
    exact, objective = exact_gradient(lab)

    def run(name: str, options: dict, beta: float, seed: int) -> dict:
        drawn = estimate(lab, estimator_config(name, **options), beta=beta, batch_size=args.batch_size,
                         repeats=args.repeats, seed=seed)
        return {"beta": beta, **drawn.against(exact)}

    rows: dict[str, list[dict]] = {}
    for seed, (label, cls, options, betas) in enumerate(estimators()):
        rows[label] = [run(cls.name, options, beta, 100 * seed + i) for i, beta in enumerate(betas)]
    result = {
        "machine": platform.machine(), "cpu_model": cpu_model(), "torch": torch.__version__,
        "game": {"vocab_size": lab.vocab_size, "seq_len": lab.generator.seq_len, "sentences": len(lab.sentences),
                 "generator_weights": exact.numel(), "objective": objective,
                 "exact_gradient_norm": exact.norm().item()},
        "batch_size": args.batch_size, "repeats": args.repeats,
        "columns": {"relative_error": "||mean - exact|| / ||exact||: the bias",
                    "noise_floor": "the relative error an unbiased estimator shows from its variance alone: "
                                   "sqrt(variance / repeats) / ||exact||",
                    "cosine": "of the mean and exact",
                    "variance": "trace of one estimate's covariance",
                    "relative_variance": "variance / ||exact||^2", "seconds_per_gradient": "one estimate"},
        "estimators": rows,
    }
    emit_json(result, args.out)
    if args.plot:
        plot(rows, args.plot)


def plot(rows: dict[str, list[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, title in ((axes[0], "relative_error", "bias: ||mean - exact|| / ||exact||"),
                             (axes[1], "relative_variance", "variance of one estimate / ||exact||^2")):
        for index, (label, drawn) in enumerate(rows.items()):
            if len(drawn) > 1:  # swept over beta
                axis.plot([r["beta"] for r in drawn], [r[key] for r in drawn], marker="o", label=label,
                          color=f"C{index % 10}")
            else:
                axis.axhline(drawn[0][key], linestyle="--", linewidth=1, label=label, color=f"C{index % 10}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("beta (inverse temperature of the relaxation)")
        axis.set_title(title, fontsize=10)
    label, noise = next((label, drawn) for label, drawn in rows.items() if len(drawn) > 1)
    axes[0].plot([r["beta"] for r in noise], [r["noise_floor"] for r in noise], color="C0", linestyle=":",
                 linewidth=1, label=f"{label}: noise floor of the mean")
    axes[1].legend(fontsize=7, loc="upper left")
    figure.suptitle("Gradient estimators against the exact gradient (V=6, T=4; dashed: beta-free, at beta=1)",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
