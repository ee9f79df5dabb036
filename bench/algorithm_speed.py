"""Seconds per adversarial iteration of each algorithm on one config, side by side in one run (JSON out).

    OMP_NUM_THREADS=2 python -m bench.algorithm_speed --config configs/demo.yaml --threads 2 \
        --out results/algorithm-speed-cpu.json

Each algorithm's trainer is built from the config with ``adversarial.algorithm`` set (and what the algorithm
requires, such as the standard loss REINFORCE's rewards need); the repeats go round the algorithms in turn, so
that all see the same machine state. The iteration is the whole of one: g_steps generator updates, then d_steps
discriminator updates.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from relgan.algorithms import algorithm_class, registered
from relgan.assembly import setup
from relgan.fast.build import cpu_model
from relgan.io_utils import emit_json
from relgan.plugins import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--algorithms", default=",".join(registered()))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value) for every algorithm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    algorithms = args.algorithms.split(",")
    trainers = {name: setup(load_config(args.config, [*args.overrides, *algorithm_class(name).overrides(),
                                                      "run.output_dir=/tmp/relgan-algorithm-speed"]), write=False)
                for name in algorithms}
    beta = torch.tensor(5.0)
    for trainer in trainers.values():
        trainer.adversarial_iteration(beta)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in algorithms}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.adversarial_iteration(beta)
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    first = trainers[algorithms[0]]
    emit_json({"config": args.config, "overrides": args.overrides, "machine": platform.machine(),
               "cpu_model": cpu_model(),
          "threads": args.threads, "torch": torch.__version__, "backend": first.backend.line(),
          "batch_size": first.config.adversarial.batch_size, "d_steps": first.config.adversarial.d_steps,
          "seconds_per_iteration": medians, "all_seconds": seconds,
          f"ratio_to_{algorithms[0]}": {name: medians[name] / medians[algorithms[0]] for name in algorithms}},
         args.out)


if __name__ == "__main__":
    main()
