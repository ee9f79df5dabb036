"""A worker of compare_revisions.py: builds one checkout's trainer at paper sizes (its own bench/train_speed.py
``build_trainer``, COCO when present), then runs one workload per line read from stdin (``mle``,
``adversarial``, ``sample``) and prints its seconds.

PYTHONPATH=CHECKOUT:CHECKOUT/bench python bench/speed_worker.py CHECKOUT [--backend auto|reference]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--backend", default="auto")
    options = parser.parse_args()
    checkout = options.checkout.resolve()
    spec = importlib.util.spec_from_file_location("train_speed", checkout / "bench" / "train_speed.py")
    assert spec is not None and spec.loader is not None  # a .py file has a source loader
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)  # the old code restarts the process here once, for its malloc settings
    import torch

    from relgan.sampling import sample_ids

    args = argparse.Namespace(config=str(checkout / "configs" / "coco_relgan100.yaml"), batch_size=64, seq_len=None,
                              device="cpu", dtype_flag="no", no_cuda_graphs=False, backend=options.backend)
    from accelerate.utils import set_seed

    try:
        from relgan.plugins import load_config
    except ImportError:  # a revision from before relgan.plugins
        from relgan.config import load_config  # type: ignore[attr-defined,no-redef]

    set_seed(load_config(args.config).run.seed)  # older revisions' build_trainer does not seed: the same weights
    trainer, _ = train_speed.build_trainer(args)
    mle_step = trainer.mle_graph if hasattr(trainer, "mle_graph") else trainer.mle_step
    iteration = trainer.adversarial_graph if hasattr(trainer, "adversarial_graph") else trainer.adversarial_iteration
    batch, beta = trainer.corpus.train_ids[:64], torch.full((), 10.0)
    workloads = {"mle": lambda: mle_step(batch), "adversarial": lambda: iteration(beta),
                 "sample": lambda: sample_ids(trainer.gen, 1000, 1000, seed=0)}
    print("ready", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        workloads[line.strip()]()
        print(f"{time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
