"""Each fast path against the reference method it replaces, at paper sizes, timed alternately (JSON out).

python -m bench.cpu_kernels [--config configs/coco_relgan100.yaml] [--isa avx2] [--repeats 3] [--out FILE]

Workloads (batch 64, COCO's 4,662 words, 37 steps, the config's networks): one MLE batch (``token_nll``
forward and backward), one G step's samples with their backward (``sample``), the D steps' no-grad fake
sentences (``sample`` of d_steps * 64 rows), one D step's discriminator on real and fake batches forward and
backward (``classify``), and one evaluation batch of text samples (``sample_tokens``). Reports the median
seconds of each side and the reference / fast ratio, for every instruction-set build the CPU executes (or
``--isa``).
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

from relgan import fast  # noqa: E402
from relgan.fast import build  # noqa: E402
from relgan.io_utils import emit_json  # noqa: E402
from relgan.models import Discriminator, Generator  # noqa: E402
from relgan.plugins import load_config  # noqa: E402


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def workloads(g: Generator, d: Discriminator, batch: int, d_steps: int, eval_batch: int) -> dict:
    vocab, length = g.vocab_size, g.seq_len
    real = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    fake = torch.softmax(torch.randn(batch, length, vocab, generator=torch.Generator().manual_seed(1)) * 3, -1)

    def mle_batch() -> None:
        g.token_nll(real).mean().backward()

    def g_step_samples() -> None:
        _, relaxed = g.sample(batch, 10.0)
        (relaxed * fake).sum().backward()

    def d_step_fakes() -> None:
        with torch.no_grad():
            g.sample(batch * d_steps, 10.0)

    def d_step() -> None:
        logits = d(real, fake)
        (logits[0].sum() - logits[1].sum()).backward()

    def text_batch() -> None:
        g.sample_tokens(eval_batch, generator=torch.Generator().manual_seed(2))

    return {"mle_batch": mle_batch, "g_step_samples": g_step_samples, "d_step_fakes": d_step_fakes,
            "d_step": d_step, "sample_eval_batch": text_batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "coco_relgan100.yaml"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=37)
    parser.add_argument("--vocab-size", type=int, default=4662)
    parser.add_argument("--isa", action="append", help="instruction set(s) (default: all the CPU executes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    config = load_config(args.config)
    torch.manual_seed(0)
    g = Generator(config.generator, args.vocab_size, args.seq_len, start_id=0)
    d = Discriminator(config.discriminator, args.vocab_size, args.seq_len)
    jobs = workloads(g, d, args.batch_size, config.adversarial.d_steps, config.eval.batch_size)
    result = {"config": args.config, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "batch_size": args.batch_size, "vocab_size": args.vocab_size, "seq_len": args.seq_len, "isas": {}}
    for isa in args.isa or build.executable_isas():
        os.environ[build.ISA_VARIABLE] = isa
        times: dict[str, dict[str, list[float]]] = {name: {"fast": [], "reference": []} for name in jobs}
        for _ in range(args.repeats + 1):  # the first round warms up
            for name, job in jobs.items():
                for side in ("fast", "reference"):
                    fast.remove(g)
                    fast.remove(d)
                    if side == "fast":
                        fast.apply(g, d, log=False)
                    g.zero_grad(set_to_none=True)
                    d.zero_grad(set_to_none=True)
                    times[name][side].append(seconds(job))
        result["isas"][isa] = {
            name: {"fast_seconds": statistics.median(t["fast"][1:]),
                   "reference_seconds": statistics.median(t["reference"][1:]),
                   "reference_over_fast": statistics.median(t["reference"][1:]) / statistics.median(t["fast"][1:])}
            for name, t in times.items()}
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
