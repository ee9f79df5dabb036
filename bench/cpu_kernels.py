"""The C++ CPU kernels against the PyTorch code they replace, timed alternately in one run (JSON out).

python bench/cpu_kernels.py [--config configs/coco_relgan100.yaml] [--repeats 5] [--out FILE]

At the config's sizes: the discriminator's conv + max of all filter sizes over B·S rows of real and fake
sentences (forward and backward), its highway gating with dropout and its highway product (oneDNN against
torch.mm, both forward and backward), and a whole discriminator forward and backward; one sampling step's
Gumbel-softmax over the D steps' d_steps·B rows (no grad) and over B rows (with its backward); one step of
text sampling by inversion over eval.batch_size rows; and, with a paper-size generator, teacher forcing of
one MLE batch (relational memory and cross-entropy, forward and backward), the G step's B sentences with
their backward, the D steps' no-grad fake sentences and one evaluation batch of text samples. Also times the
relational memory kernel's small per-step products through oneDNN (weights packed once) against torch.mm,
alone and inside teacher forcing, and the G step's sentences with one backward for all recorded steps against
the graph built step by step.
Checks that both paths give the same logits.
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

from relgan import native  # noqa: E402
from relgan.config import load_config  # noqa: E402
from relgan.gumbel import categorical_from_logits, relaxed_sample  # noqa: E402
from relgan.models import Discriminator, Generator, conv_max  # noqa: E402
from relgan.models.highway import highway  # noqa: E402
from relgan.models.layers import onednn_linear  # noqa: E402


def path(fused: bool):
    """The C++ kernels (True) or the PyTorch code (False) for the block."""
    return contextlib.nullcontext() if fused else native.pytorch_path()


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
    if not native.kernels_available():
        sys.exit("the C++ CPU kernels could not be built here; nothing to compare")
    full_config = load_config(args.config)
    config = full_config.discriminator
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

    width = config.num_filters * len(config.filter_sizes)
    highway_features = torch.randn(rows, width, requires_grad=True)
    highway_both = torch.randn(rows, 2 * width, requires_grad=True)
    highway_weight = torch.randn(2 * width, width, requires_grad=True)

    def highway_with_dropout() -> None:
        out = highway(highway_features, highway_both, config.dropout)
        torch.autograd.grad(out, (highway_features, highway_both), torch.ones_like(out))

    def highway_product() -> None:
        out = onednn_linear(highway_features, highway_weight)
        torch.autograd.grad(out, (highway_features, highway_weight), torch.ones_like(out))

    def discriminator_step() -> None:
        d.zero_grad(set_to_none=True)
        logits_real, logits_fake = d(real, fake)
        (logits_real.mean() - logits_fake.mean()).backward()

    padded_vocab = -(-args.vocab_size // 64) * 64  # the generator's padded output layer
    fake_rows = full_config.adversarial.d_steps * args.batch_size
    step_logits = (torch.randn(fake_rows, padded_vocab) * 3)[:, : args.vocab_size]
    generator_logits = step_logits[: args.batch_size].detach().clone().requires_grad_()
    eval_logits = (torch.randn(full_config.eval.batch_size, padded_vocab) * 3)[:, : args.vocab_size]
    beta = torch.tensor(10.0)

    def gumbel_softmax_no_grad() -> None:
        with torch.no_grad():
            relaxed_sample(step_logits, beta)

    def gumbel_softmax_with_backward() -> None:
        _, relaxed = relaxed_sample(generator_logits, beta)
        relaxed.backward(torch.ones_like(relaxed))

    def inversion() -> None:
        categorical_from_logits(eval_logits)

    generator = Generator(full_config.generator, args.vocab_size, args.seq_len, start_id=0)

    sentences = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_len))
    upstream = torch.randn(args.batch_size, args.seq_len, args.vocab_size)

    def teacher_forcing() -> None:
        generator.zero_grad(set_to_none=True)
        generator.token_nll(sentences).mean().backward()

    def g_step_samples() -> None:
        generator.zero_grad(set_to_none=True)
        _, relaxed = generator.sample(args.batch_size, beta)
        (relaxed * upstream).sum().backward()

    @torch.no_grad()
    def d_step_samples() -> None:
        generator.sample(fake_rows, beta)

    def text_samples() -> None:
        generator.sample_tokens(full_config.eval.batch_size)

    cases = {"conv_max": conv_only, "highway": highway_with_dropout, "highway_product": highway_product,
             "discriminator": discriminator_step,
             "gumbel_softmax_d_steps": gumbel_softmax_no_grad, "gumbel_softmax_g_step": gumbel_softmax_with_backward,
             "inversion_sampling": inversion, "teacher_forcing": teacher_forcing, "g_step_samples": g_step_samples,
             "d_step_samples": d_step_samples, "text_samples": text_samples}
    logits = {}
    for enabled in (True, False):
        with torch.no_grad(), path(enabled):
            logits[enabled] = torch.cat(d(real, fake))
    times = {(name, enabled): [] for name in cases for enabled in (True, False)}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for enabled in (True, False):
            for name, fn in cases.items():
                with path(enabled):
                    elapsed = seconds(fn)
                if repeat:
                    times[name, enabled].append(elapsed)

    # the relational memory kernel's small products, oneDNN or ATen's mm: alone (the T steps' forward and
    # backward products at paper sizes), and inside teacher forcing
    core = generator.core
    weights = [core.qkv.weight, core.mlp[0].weight, core.mlp[2].weight, core.memory_gate_projection.weight]
    memory_rows, all_rows = args.batch_size * core.mem_slots, args.batch_size * (core.mem_slots + 1)
    step_rows = [memory_rows, all_rows, all_rows, memory_rows]  # qkv, two MLP layers, gates
    inputs = [torch.randn(rows, w.shape[1]) for rows, w in zip(step_rows, weights)]
    output_grads = [torch.randn(rows, w.shape[0]) for rows, w in zip(step_rows, weights)]

    def small_products(onednn: bool) -> None:
        if onednn:
            pack = torch.ops.mkldnn._reorder_linear_weight
            linear = torch.ops.mkldnn._linear_pointwise
            packed = [pack(w, rows) for w, rows in zip(weights, step_rows)]  # packing counts, as in the kernel
            packed_t = [pack(w.t().contiguous(), rows) for w, rows in zip(weights, step_rows)]
            for _ in range(args.seq_len):
                for x, w in zip(inputs, packed):
                    linear(x, w, None, "none", [], "")
            for _ in range(args.seq_len):
                for g, w in zip(output_grads, packed_t):
                    linear(g, w, None, "none", [], "")
        else:
            for _ in range(args.seq_len):
                for x, w in zip(inputs, weights):
                    torch.mm(x, w.t())
            for _ in range(args.seq_len):
                for g, w in zip(output_grads, weights):
                    torch.mm(g, w)

    products = {(case, onednn): [] for case in ("alone", "teacher_forcing") for onednn in (True, False)}
    available = native.onednn_available
    with torch.no_grad():
        small_products(True)
    for repeat in range(args.repeats + 1 if available() else 0):
        for onednn in (True, False):
            native.onednn_available = lambda: onednn  # noqa: B023 (called inside this iteration)
            with torch.no_grad():
                alone = seconds(lambda: small_products(onednn))  # noqa: B023
            elapsed = seconds(teacher_forcing)
            if repeat:
                products["alone", onednn].append(alone)
                products["teacher_forcing", onednn].append(elapsed)
    native.onednn_available = available

    # the G step's sampling with gradients: steps recorded without a graph and one backward for all of them
    # (the default) against the graph built step by step, both with the C++ kernels
    recorded = {True: [], False: []}
    for repeat in range(args.repeats + 1):
        for one_backward in (True, False):
            if not one_backward:
                core.recorder = lambda: None
            elapsed = seconds(g_step_samples)
            if not one_backward:
                del core.recorder
            if repeat:
                recorded[one_backward].append(elapsed)

    def products_entry(case: str) -> dict[str, float]:
        fast, plain = statistics.median(products[case, True]), statistics.median(products[case, False])
        return {"onednn_seconds": fast, "mm_seconds": plain, "speedup": plain / fast}

    def entry(name: str) -> dict[str, float]:
        fast, plain = statistics.median(times[name, True]), statistics.median(times[name, False])
        return {"cpp_seconds": fast, "pytorch_seconds": plain, "speedup": plain / fast}

    result = {
        "threads": torch.get_num_threads(),
        "rows": rows,
        "seq_len": args.seq_len,
        "filter_sizes": d.filter_sizes,
        "num_filters": config.num_filters,
        "sampling_rows": {"d_steps": fake_rows, "g_step": args.batch_size, "eval": full_config.eval.batch_size},
        "vocab_size": args.vocab_size,
        "conv_max_forward_backward": entry("conv_max"),
        "highway_with_dropout_forward_backward": entry("highway"),
        "highway_product_forward_backward_onednn_vs_mm": entry("highway_product"),
        "discriminator_forward_backward": entry("discriminator"),
        "gumbel_softmax_d_steps_no_grad": entry("gumbel_softmax_d_steps"),
        "gumbel_softmax_g_step_forward_backward": entry("gumbel_softmax_g_step"),
        "inversion_sampling_step": entry("inversion_sampling"),
        "generator_teacher_forcing_forward_backward": entry("teacher_forcing"),
        "generator_g_step_samples_forward_backward": entry("g_step_samples"),
        "generator_g_step_samples_one_backward_vs_step_graph": {
            "one_backward_seconds": statistics.median(recorded[True]),
            "step_graph_seconds": statistics.median(recorded[False]),
            "speedup": statistics.median(recorded[False]) / statistics.median(recorded[True])},
        "generator_d_step_samples_no_grad": entry("d_step_samples"),
        "generator_text_samples_eval_batch": entry("text_samples"),
        "relational_memory_products": ({case: products_entry(case) for case in ("alone", "teacher_forcing")}
                                       if available() else "oneDNN unavailable"),
        "max_logit_difference": (logits[True] - logits[False]).abs().max().item(),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
