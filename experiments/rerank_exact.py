"""Discriminator-reranked MLE on the exact benchmark, computed exactly: MLE under temperature and top-p, and MLE
reranked by exp(alpha d) (the limit of many candidates, relgan/reranking.py) with d either the true log-ratio
log p_oracle - log p_G or a discriminator trained on real sentences against MLE samples. Every divergence is
exact (relgan/metrics/exact.py). JSON and a Markdown table out.

    OMP_NUM_THREADS=2 python -m experiments.rerank_exact --seeds 1,2,3 --out results/rerank-exact.json \
        --table results/rerank-exact.md

It shows whether the reranking baseline can beat MLE's decoding frontier when its signal is right (the true
log-ratio), and how much of that a trained discriminator's signal keeps.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from experiments.entry import run
from relgan.assembly import setup
from relgan.decoding import Decoding
from relgan.fast.build import cpu_model
from relgan.io_utils import atomic_write_text, emit_json
from relgan.metrics.aggregate import summarise_seeds
from relgan.metrics.exact import divergences, generator_log_probs, oracle_log_probs
from relgan.models import Discriminator
from relgan.plugins import load_config
from relgan.reranking import exact_reranked, reranked_log_probs

RULES = (Decoding(0.8), Decoding(0.9), Decoding(), Decoding(1.1), Decoding(top_p=0.9), Decoding(top_p=0.95))
ALPHAS = (0.25, 0.5, 0.75, 1.0, 1.5)
KEYS = ("exact_forward_kl", "exact_reverse_kl", "exact_tv", "exact_entropy")


def one_seed(config_path: str, seed: int, output_dir: str, reranker_steps: int) -> dict[str, dict[str, float]]:
    """Every row's exact divergences for one seed: {row: {key: value}}."""
    config = load_config(config_path, [f"run.seed={seed}", "adversarial.steps=0", f"run.output_dir={output_dir}",
                                       f"run.name=rerank-exact-s{seed}", "eval.metrics=[nll_oracle]"])
    trainer = setup(config, overwrite=True)
    trainer.fit()
    generator, corpus = trainer.gen.eval(), trainer.corpus
    if corpus.oracle is None:
        raise ValueError(f"{config_path} is not an oracle benchmark")
    log_p = oracle_log_probs(corpus.oracle)
    length = corpus.seq_len
    rows = {f"MLE, {rule.label}": divergences(log_p, generator_log_probs(generator, rule), length) for rule in RULES}
    log_q = generator_log_probs(generator, Decoding())
    for alpha in ALPHAS:
        rows[f"MLE reranked by the true log-ratio, alpha {alpha:g}"] = divergences(
            log_p, reranked_log_probs(log_q, log_p - log_q, alpha), length)
    torch.manual_seed(seed)
    discriminator = Discriminator(config.discriminator, corpus.vocab_size, length)
    trained = exact_reranked(generator, discriminator, log_p, corpus.train_ids, corpus.vocab_size, ALPHAS,
                             reranker_steps, seed)
    rows.update({f"MLE reranked by a trained D, alpha {alpha:g}": values for alpha, values in trained.items()})
    return rows


def table(result: dict[str, Any]) -> str:
    lines = [f"Exact divergences on {result['config']} (nats per token; TV over sentences), "
             f"{len(result['seeds'])} seed(s), mean ± 95% interval; oracle entropy {result['oracle_entropy']:.4f}.",
             "", "| row | KL(oracle‖G) | KL(G‖oracle) | TV | entropy |", "|---|---|---|---|---|"]
    for name, stats in result["rows"].items():
        cells = ["∞" if math.isinf(stats[k]["mean"]) else f"{stats[k]['mean']:.4f}"
                 + (f" ± {stats[k]['ci95']:.4f}" if stats[k]["ci95"] is not None else "") for k in KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/exact.yaml")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--reranker-steps", type=int, default=1000, help="Adam steps of the reranking discriminator")
    parser.add_argument("--output-dir", default="runs/rerank-exact")
    parser.add_argument("--out")
    parser.add_argument("--table")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    start = time.perf_counter()
    per_seed = [one_seed(args.config, seed, args.output_dir, args.reranker_steps) for seed in seeds]
    rows = {name: {key: summarise_seeds([rows[name][key] for rows in per_seed]) for key in KEYS}
            for name in per_seed[0]}
    result = {"config": args.config, "seeds": seeds, "reranker_steps": args.reranker_steps,
              "oracle_entropy": per_seed[0][next(iter(per_seed[0]))]["oracle_entropy"], "rows": rows,
              "per_seed": per_seed, "minutes": (time.perf_counter() - start) / 60,
              "machine": f"{cpu_model()} ({platform.machine()})", "threads": torch.get_num_threads()}
    emit_json(result, args.out)
    if args.table:
        atomic_write_text(Path(args.table), table(result))


if __name__ == "__main__":
    run(main)
