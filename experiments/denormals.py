"""Do denormal floats slow down late MLE batches on the CPU? (JSON out)

python -m experiments.denormals --run runs/<name> [--checkpoint DIR] [--batches 6] [--out FILE]

Loads a trained generator (late in MLE its softmax probabilities underflow towards denormals), then times
the same MLE batches (forward, backward) alternately with and without torch.set_flush_denormal(True), and
counts the denormal values in the gradients.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from experiments.entry import run  # noqa: E402
from relgan.checkpoint import load_generator, load_run_config  # noqa: E402
from relgan.data import load_corpus  # noqa: E402
from relgan.io_utils import emit_json  # noqa: E402


def mle_batch(generator, batch) -> int:
    """One forward and backward pass; returns how many gradient entries are denormal."""
    generator.zero_grad(set_to_none=True)
    loss = F.cross_entropy(generator(batch).flatten(0, 1), batch.flatten())
    loss.backward()
    tiny = torch.finfo(torch.float32).tiny
    return sum(int(((p.grad != 0) & (p.grad.abs() < tiny)).sum()) for p in generator.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    run = Path(args.run)
    generator, _, _ = load_generator(run, Path(args.checkpoint) if args.checkpoint else None)
    config = load_run_config(run)
    ids = load_corpus(config.data, saved=run).train_ids
    batches = list(ids[: args.batches * 64].split(64))
    times: dict[bool, list[float]] = {True: [], False: []}
    denormals = {}
    mle_batch(generator, batches[0])  # warm-up
    for batch in batches:
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            start = time.perf_counter()
            denormals[flush] = mle_batch(generator, batch)
            times[flush].append(time.perf_counter() - start)
    torch.set_flush_denormal(False)
    result = {
        "run": str(run), "checkpoint": args.checkpoint, "threads": torch.get_num_threads(),
        "seconds_per_batch": {"default": statistics.median(times[False]),
                              "flush_denormal": statistics.median(times[True])},
        "ratio": statistics.median(times[False]) / statistics.median(times[True]),
        "denormal_gradient_entries": {"default": denormals[False], "flush_denormal": denormals[True]},
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    run(main)
