"""Seconds to compute the exact metrics (relgan/metrics/exact.py) of one generator on the exact benchmark: every
sentence's probability under the oracle (once; kept for later evaluations) and under the generator with each
decoding rule, and the divergences. JSON out.

    OMP_NUM_THREADS=2 python -m bench.exact_metrics --threads 2 --out results/exact-metrics-cpu.json

The generator is the config's, freshly initialised (its weights do not change the cost).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from relgan.data import load_corpus
from relgan.decoding import Decoding
from relgan.fast.build import cpu_model
from relgan.io_utils import emit_json
from relgan.metrics.exact import divergences, generator_log_probs, oracle_log_probs
from relgan.models import build_generator
from relgan.plugins import load_config

RULES = (Decoding(), Decoding(temperature=0.8), Decoding(top_k=4), Decoding(top_p=0.9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/exact.yaml")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, ["data.oracle.num_train=64", "data.oracle.num_test=64"])
    corpus = load_corpus(config.data)
    oracle = corpus.oracle
    if oracle is None:
        parser.error(f"{args.config} is not an oracle benchmark")
    generator = build_generator(config.generator, corpus.vocab_size, corpus.seq_len, corpus.start_id).eval()
    start = time.perf_counter()
    log_p = oracle_log_probs(oracle)
    oracle_seconds = time.perf_counter() - start
    rules = {}
    for rule in RULES:
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            divergences(log_p, generator_log_probs(generator, rule), corpus.seq_len)
            seconds.append(time.perf_counter() - start)
        rules[rule.label] = statistics.median(seconds)
    emit_json({"config": args.config, "sentences": len(log_p), "machine": platform.machine(), "cpu_model": cpu_model(),
               "threads": args.threads, "torch": torch.__version__, "oracle_seconds_once": oracle_seconds,
               "generator_seconds_per_rule": rules}, args.out)


if __name__ == "__main__":
    main()
