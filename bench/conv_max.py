"""The discriminator's convolution + max over time: fused CPU kernel against the PyTorch path (JSON out).

python bench/conv_max.py [--config configs/coco_relgan100.yaml] [--repeats 5] [--out FILE]

At the config's sizes (B·S rows of real and fake sentences together, as in a D step), times alternately
the fused kernel and the chunked PyTorch path: the conv + max of all filter sizes (forward and backward),
and a whole discriminator forward and backward on a real and a fake batch. Checks that both paths give
the same logits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from relgan.malloc_tuning import restart_with_malloc_tuning  # noqa: E402

restart_with_malloc_tuning()

import torch  # noqa: E402
from json_output import emit  # noqa: E402

from relgan.config import load_config  # noqa: E402
from relgan.models import Discriminator, conv_max  # noqa: E402


def path(fused: bool):
    """The fused kernel (True) or the PyTorch path (False) for the block."""
    return contextlib.nullcontext() if fused else conv_max.pytorch_path()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "coco_relgan100.yaml"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=37)
    parser.add_argument("--vocab-size", type=int, default=4662)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if not conv_max.fused_kernel_available():
        sys.exit("the fused CPU kernel could not be built here; nothing to compare")
    config = load_config(args.config).discriminator
    torch.manual_seed(0)
    d = Discriminator(config, args.vocab_size, args.seq_len).eval()  # no dropout: identical logits
    real = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_len))
    fake = torch.softmax(torch.randn(args.batch_size, args.seq_len, args.vocab_size) * 3, -1)
    rows = 2 * args.batch_size * config.num_representations
    sequence = torch.randn(rows, args.seq_len, config.embedding_dim // config.num_representations,
                           requires_grad=True)

    def conv_only() -> None:
        pooled = [conv_max.conv_max_over_time(sequence, w, size) for size, w in zip(d.filter_sizes, d.conv_weights)]
        torch.cat(pooled, -1).sum().backward()

    def discriminator_step() -> None:
        d.zero_grad(set_to_none=True)
        logits_real, logits_fake = d(real, fake)
        (logits_real.mean() - logits_fake.mean()).backward()

    logits = {}
    for enabled in (True, False):
        with torch.no_grad(), path(enabled):
            logits[enabled] = torch.cat(d(real, fake))
    times = {(name, enabled): [] for name in ("conv_max", "discriminator") for enabled in (True, False)}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for enabled in (True, False):
            for name, fn in (("conv_max", conv_only), ("discriminator", discriminator_step)):
                with path(enabled):
                    elapsed = seconds(fn)
                if repeat:
                    times[name, enabled].append(elapsed)

    def entry(name: str) -> dict[str, float]:
        fast, plain = statistics.median(times[name, True]), statistics.median(times[name, False])
        return {"fused_seconds": fast, "pytorch_seconds": plain, "speedup": plain / fast}

    result = {
        "threads": torch.get_num_threads(),
        "rows": rows,
        "seq_len": args.seq_len,
        "filter_sizes": d.filter_sizes,
        "num_filters": config.num_filters,
        "conv_max_forward_backward": entry("conv_max"),
        "discriminator_forward_backward": entry("discriminator"),
        "max_logit_difference": (logits[True] - logits[False]).abs().max().item(),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
