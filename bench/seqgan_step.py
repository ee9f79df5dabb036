"""One SeqGAN generator step, relgan against TextGAN-PyTorch's SeqGAN, side by side in one run (JSON out).

Both at SeqGAN's sizes: oracle vocabulary 5000, length 20, batch 64, 16 Monte-Carlo rollouts per prefix, an LSTM
generator of 32/32 and SeqGAN's discriminator (configs/seqgan_len20.yaml; TextGAN-PyTorch's defaults). A step is:
sample the batch, reward every prefix by the discriminator's mean score over its rollouts, one policy-gradient
update; ``reward`` times the rollouts and their scoring alone. TextGAN-PyTorch's side runs in its own process
(bench/textgan_seqgan_worker.py) inside a checkout of commit 7ff8909e, which is not part of relgan:

    git clone https://github.com/williamSYSU/TextGAN-PyTorch /tmp/textgan && git -C /tmp/textgan checkout 7ff8909e
    OMP_NUM_THREADS=2 python -m bench.seqgan_step --textgan /tmp/textgan --threads 2 --out results/seqgan-step-cpu.json

The repeats alternate between the two sides, so that both see the same machine state.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from relgan.algorithms.reinforce import PolicyGradient, sentence_logits
from relgan.assembly import setup
from relgan.fast.build import cpu_model
from relgan.io_utils import emit_json
from relgan.plugins import load_config
from relgan.training import Trainer

REPO = Path(__file__).resolve().parent.parent



def relgan_side(backend: str) -> tuple[dict, Trainer]:
    """The workloads of relgan's SeqGAN step (configs/seqgan_len20.yaml) and its trainer."""
    config = load_config(REPO / "configs" / "seqgan_len20.yaml", [f"run.backend={backend}", "run.output_dir=/tmp"])
    trainer = setup(config, write=False)
    algorithm, draws, size = trainer.algorithm, trainer.draws, config.adversarial.batch_size
    assert isinstance(algorithm, PolicyGradient)  # the config names seqgan
    beta = torch.tensor(1.0)
    tokens = trainer.gen.sample_tokens(size)

    def reward() -> None:
        with torch.no_grad():
            step = algorithm.generator_step_draws(draws, size)
            algorithm.rewards(trainer.gen, lambda ids, labels: _logits(trainer, ids), tokens, step)

    return {"step": lambda: trainer.generator_update(algorithm.generator_step_draws(draws, size), beta),
            "reward": reward}, trainer


def _logits(trainer: Trainer, ids: torch.Tensor) -> torch.Tensor:
    return sentence_logits(trainer.disc, ids, None)


class TextGANSide:
    """TextGAN-PyTorch's workloads in a worker process."""

    def __init__(self, checkout: Path, threads: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS=str(threads))
        self.process = subprocess.Popen([sys.executable, str(REPO / "bench" / "textgan_seqgan_worker.py"),
                                         str(threads)], cwd=checkout, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdin is not None and self.process.stdout is not None  # both piped
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        ready = self.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"the TextGAN-PyTorch worker did not start in {checkout}")
        self.sizes = dict(zip(("vocab_size", "seq_len", "batch_size", "rollouts"), map(int, ready[1:]), strict=True))

    def __call__(self, workload: str) -> float:
        self.stdin.write(workload + "\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textgan", type=Path, required=True, help="a checkout of TextGAN-PyTorch at 7ff8909e")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="auto", choices=("auto", "reference"))
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours, trainer = relgan_side(args.backend)
    theirs = TextGANSide(args.textgan.resolve(), args.threads)
    times: dict[str, dict[str, list[float]]] = {side: {"step": [], "reward": []} for side in ("relgan", "textgan")}
    for workload in ("step", "reward"):
        ours[workload]()  # warm-up
        theirs(workload)
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours[workload]()
            times["relgan"][workload].append(time.perf_counter() - start)
            times["textgan"][workload].append(theirs(workload))
    theirs.close()
    medians = {side: {w: statistics.median(v) for w, v in by.items()} for side, by in times.items()}
    emit_json({
        "machine": f"{platform.node() and 'vm'} {platform.machine()}", "cpu_model": cpu_model(),
        "threads": args.threads, "torch": torch.__version__, "relgan_backend": trainer.backend.line(),
        "sizes": theirs.sizes, "repeats": args.repeats,
        "seconds": medians, "all_seconds": times,
        "speedup": {w: medians["textgan"][w] / medians["relgan"][w] for w in ("step", "reward")},
    }, args.out)


if __name__ == "__main__":
    main()
