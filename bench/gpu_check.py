"""On a GPU: do CUDA-graph training steps compute what eager steps compute? (JSON out)

python -m bench.gpu_check [--config configs/coco_relgan100.yaml] [--steps 6] [--dtype bf16]

Builds two trainers with the same seed and weights, one replaying CUDA graphs and one eager, runs the same
MLE batches and adversarial iterations (reseeded per step, as training does) and reports the largest
parameter and loss differences, and the time per step of both.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import AutocastKwargs, set_seed  # noqa: E402

from relgan.data import Corpus  # noqa: E402
from relgan.plugins import load_config  # noqa: E402
from relgan.runtime import seed_step  # noqa: E402
from relgan.tokenization import build_identity_tokenizer  # noqa: E402
from relgan.training import Trainer  # noqa: E402


def make_trainer(config_path: str, graphs: bool, dtype: str, corpus: Corpus) -> Trainer:
    config = load_config(config_path, [f"run.cuda_graphs={graphs}", f"run.mixed_precision={dtype}",
                                       "run.tracker=none", "eval.metrics=[nll_gen]"])
    set_seed(config.run.seed)
    handlers = [AutocastKwargs(cache_enabled=False)] if graphs else None
    accelerator = Accelerator(mixed_precision=dtype, kwargs_handlers=handlers)
    return Trainer(config, corpus, Path(tempfile.mkdtemp()), accelerator)


def run(trainer: Trainer, batches: list[torch.Tensor], steps: int) -> dict:
    torch.cuda.synchronize()
    start = time.perf_counter()
    losses = []
    for step, batch in enumerate(batches):
        seed_step(0, 0, "mle", step)
        losses.append(trainer.mle_step(batch)[0].item())
    torch.cuda.synchronize()
    mle_seconds = (time.perf_counter() - start) / len(batches)
    start = time.perf_counter()
    for step in range(steps):
        seed_step(0, 0, "adversarial", step)
        out = trainer.adversarial_iteration(torch.full((), 5.0, device=trainer.acc.device))
        losses += [out[0].item(), out[1].item()]
    torch.cuda.synchronize()
    params = torch.cat([p.detach().float().flatten() for p in
                        [*trainer.gen.parameters(), *trainer.disc.parameters()]])
    return {"losses": losses, "params": params, "mle_seconds": mle_seconds,
            "adversarial_seconds": (time.perf_counter() - start) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "coco_relgan100.yaml"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--dtype", default="no", choices=("no", "bf16"))
    args = parser.parse_args()
    vocab, length = 4662, 37
    ids = torch.randint(0, vocab, (2000, length), generator=torch.Generator().manual_seed(0))
    corpus = Corpus(build_identity_tokenizer(vocab), ids, ids[:200], start_id=0, eos_id=None)
    batches = [ids[i * 64:(i + 1) * 64].cuda() for i in range(args.steps)]
    results = {}
    for graphs in (True, False):
        trainer = make_trainer(args.config, graphs, args.dtype, corpus)
        results[graphs] = run(trainer, batches, args.steps)
        results[graphs]["captured"] = trainer.adversarial_iteration.graph is not None
    graph, eager = results[True], results[False]
    report = {
        "device": torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "graphs_captured": graph["captured"],
        "max_param_difference": (graph["params"] - eager["params"]).abs().max().item(),
        "max_loss_difference": max(abs(a - b) for a, b in zip(graph["losses"], eager["losses"], strict=True)),
        "losses_graph": graph["losses"],
        "losses_eager": eager["losses"],
        "seconds_per_mle_batch": {"graphs": graph["mle_seconds"], "eager": eager["mle_seconds"]},
        "seconds_per_adversarial_iteration": {"graphs": graph["adversarial_seconds"],
                                              "eager": eager["adversarial_seconds"]},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
