"""Training and sampling speed at paper sizes, against the machine's measured matmul peak (JSON out).

python -m bench.train_speed [--config configs/coco_relgan100.yaml [--config configs/coco_transformer.yaml]]
                            [--device cuda] [--dtype bf16] [--backend auto|reference]
python -m bench.train_speed --seeds 1 2 6 [--device cuda] [--backend auto|reference]

For each config, in one run (side by side, with the ratios of each config's times to the first's): times warm
MLE batches, adversarial iterations (with their G-step / D-step split) and sampling of 10,000
sentences through the training code itself; counts each one's FLOPs from the config; measures the fp32
(or bf16) matmul peak in the same run (the better of its start and its end, and of torch.mm and oneDNN);
prints achieved GFLOP/s, the fraction of peak and the floor (seconds at the measured peak). Uses COCO from
$RELGAN_SHARED_DATA (default ../shared/data) when present, else random ids of the same shape.

With ``--seeds K ...``: per-seed throughput of K replicas trained batched (``run.replicas=batched``: one vmapped
pass of the reference models per step) for each K, side by side with one replica trained alone on the
``--backend`` (what ``run.replicas=sequential`` costs per seed), for the MLE batch and the adversarial iteration
(its per-replica draws of Gumbel noise and dropout masks included).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from relgan.adversarial import discriminator_step_draws  # noqa: E402
from relgan.config import Config  # noqa: E402
from relgan.fast.onednn import onednn_available  # noqa: E402
from relgan.io_utils import emit_json  # noqa: E402
from relgan.plugins import load_config  # noqa: E402

# ----------------------------------------------------------------------------------------- FLOP counts


def generator_token_flops(config: Config, vocab: int, seq_len: int) -> tuple[float, float]:
    """Forward FLOPs per generated token (multiply-add = 2): (input projections, recurrence + output layer).

    The input projections depend on the token alone (the sampler computes them per vocabulary entry when a
    batch feeds more tokens than the vocabulary has; see ``generator_forward_flops``). A transformer's token
    attends over seq_len / 2 positions on average.
    """
    g = config.generator
    e = g.embedding_dim
    if g.architecture == "transformer":
        attention = 2 * (seq_len / 2) * e  # scores and weighted values per layer
        return 0.0, 2 * (g.num_layers * (12 * e * e + attention) + e * vocab)
    if g.architecture == "lstm":
        h = g.hidden_size
        return 2 * e * 4 * h, 2 * (h * 4 * h + h * vocab)
    n, f = g.mem_slots, g.num_heads * g.head_size
    q = g.num_heads * 3 * g.head_size
    rows = n + 1
    inputs = 2 * (e * f + f * q + f * 2 * f)  # input projection, qkv of the input row, input gates
    recurrent = 2 * (
        n * f * q  # qkv of the memory rows
        + 2 * rows * rows * f  # attention scores and weighted values
        + rows * 2 * f * f  # two MLP layers
        + n * f * 2 * f  # gates from memory
        + n * f * vocab  # output projection
    )
    return inputs, recurrent


def generator_forward_flops(config: Config, vocab: int, seq_len: int, batch: int, sampling: bool) -> float:
    """Forward FLOPs of the generator over ``batch`` sequences, as the code computes them.

    Teacher forcing projects every input token; sampling projects the whole vocabulary once instead
    when batch * seq_len > vocab (the fast ``Generator.sample``'s projection table).
    """
    inputs, recurrent = generator_token_flops(config, vocab, seq_len)
    tokens = batch * seq_len
    projected = vocab if sampling and tokens > vocab else tokens
    return tokens * recurrent + projected * inputs


def discriminator_flops(config: Config, vocab: int, seq_len: int, dense_input: bool) -> tuple[float, float]:
    """(forward FLOPs of one sentence, of which in the input embedding) for the discriminator."""
    d = config.discriminator
    counts = d.filter_counts or [d.num_filters] * len(d.filter_sizes)
    s, width = d.num_representations, sum(counts)
    rep = d.embedding_dim // s
    embed = 2 * seq_len * vocab * d.embedding_dim if dense_input else 0.0
    conv = sum(2 * (seq_len - k + 1) * s * k * rep * count for k, count in zip(d.filter_sizes, counts, strict=True))
    rest = 2 * s * (2 * width * width + width * d.hidden_size + d.hidden_size)
    return embed + conv + rest, embed


def workload_gflop(config: Config, vocab: int, seq_len: int, batch: int, samples: int) -> dict[str, float]:
    """GFLOP of an MLE batch, of a generator step, a discriminator step, an adversarial iteration, sampling.

    Backward passes cost twice the forward (input and weight gradients) except where one of them is not
    needed: the embedding of the discriminator's input has no input gradient in a D step, and D's weights
    get no gradient in a G step. The D steps' fake sentences come from one no-grad pass over all of them.
    """
    adv = config.adversarial
    teacher_forced = generator_forward_flops(config, vocab, seq_len, batch, sampling=False)
    sampled = generator_forward_flops(config, vocab, seq_len, batch, sampling=True)
    fakes_per_d_step = generator_forward_flops(config, vocab, seq_len, adv.d_steps * batch, sampling=True) / adv.d_steps
    d_real, _ = discriminator_flops(config, vocab, seq_len, dense_input=False)
    d_fake, d_embed = discriminator_flops(config, vocab, seq_len, dense_input=True)
    d_real, d_fake, d_embed = d_real * batch, d_fake * batch, d_embed * batch
    g_step = 3 * sampled + d_real + d_fake + d_fake  # sample + backward, D(real) no grad, D(fake) + input grads
    d_step = fakes_per_d_step + 3 * (d_real + d_fake) - d_embed  # no-grad samples; D forward + both gradients
    size = config.eval.batch_size
    sizes = [size] * (samples // size) + ([samples % size] if samples % size else [])
    return {
        "mle_batch": 3 * teacher_forced / 1e9,
        "g_step": g_step / 1e9,
        "d_step": d_step / 1e9,
        "adversarial_iteration": (adv.g_steps * g_step + adv.d_steps * d_step) / 1e9,
        "sample_10k": sum(generator_forward_flops(config, vocab, seq_len, n, sampling=True) for n in sizes) / 1e9,
    }


# ------------------------------------------------------------------------------------------ timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seeded_iteration(trainer, beta: torch.Tensor) -> None:
    """One adversarial iteration from the same draws each time (for replicas: every replica's stream seeded)."""
    trainer.book.seed("adversarial", 0)
    trainer.adversarial_iteration(beta)


def timed(fn, device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """Best of several large square matmuls, per library: torch.mm and, for fp32 on CPU, oneDNN (which the
    relational memory's kernel uses, and which beats MKL's sgemm on some CPUs)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    products = {"torch.mm": lambda: a @ b}
    if device.type == "cpu" and dtype == torch.float32 and onednn_available():
        products["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    return {name: 2 * n**3 / min(timed(fn, device, repeats=10, warmup=3)) / 1e9 for name, fn in products.items()}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


# ------------------------------------------------------------------------------------------ setup


def build_trainer(args: argparse.Namespace):
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from relgan.data import Corpus, load_corpus
    from relgan.tokenization import build_identity_tokenizer
    from relgan.training import Trainer

    data = Path(os.environ.get("RELGAN_SHARED_DATA", REPO.parent / "shared" / "data")) / "image_coco"
    overrides = [f"adversarial.batch_size={args.batch_size}", f"mle.batch_size={args.batch_size}",
                 "eval.metrics=[nll_gen]", "run.tracker=none", f"run.mixed_precision={args.dtype_flag}",
                 f"run.backend={args.backend}",
                 f"run.cuda_graphs={not args.no_cuda_graphs}"]
    if (data / "train.txt").is_file() and args.seq_len is None:
        overrides += [f"data.train_file={data / 'train.txt'}", f"data.test_file={data / 'test.txt'}"]
        config = load_config(args.config, overrides)
        corpus = load_corpus(config.data)
        source = f"COCO from {data}"
    else:
        config = load_config(args.config, overrides)
        vocab, seq_len = 4662, args.seq_len or 37
        ids = torch.randint(0, vocab, (10000, seq_len), generator=torch.Generator().manual_seed(0))
        corpus = Corpus(build_identity_tokenizer(vocab), ids, ids[:1000], start_id=0, eos_id=None)
        source = "random ids"
    accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision=args.dtype_flag)
    set_seed(config.run.seed)  # as training.setup does: every process timed starts from the same weights
    return Trainer(config, corpus, Path(tempfile.mkdtemp()), accelerator), source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="repeat to compare configs in one run "
                        "(default: configs/coco_relgan100.yaml)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, help="use random ids of this length instead of COCO")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed MLE batches (adversarial: a third of it)")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--no-cuda-graphs", action="store_true", help="time eager steps on the GPU")
    parser.add_argument("--backend", default="auto", choices=("auto", "reference", "fast"))
    parser.add_argument("--seeds", type=int, nargs="+", metavar="K", help="time K replicas batched, for each K")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    args.dtype_flag = "bf16" if args.dtype == "bf16" else "no"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seeds:
        if args.dtype != "fp32" or (args.config and len(args.config) > 1):
            parser.error("--seeds times one config in fp32 (batched replicas have no mixed precision)")
        args.config = (args.config or [str(REPO / "configs" / "coco_relgan100.yaml")])[0]
        emit_json(measure_seeds(args), args.out)
        return
    configs = args.config or [str(REPO / "configs" / "coco_relgan100.yaml")]
    runs = [measure(argparse.Namespace(**{**vars(args), "config": config})) for config in configs]
    timings = ("mle_batch", "adversarial_iteration", "sample_10k")
    result = runs[0] if len(runs) == 1 else {
        "configs": configs,
        "ratio_to_first": {run["config"]: {key: run[key]["seconds"] / runs[0][key]["seconds"] for key in timings}
                           for run in runs},
        "runs": runs,
    }
    emit_json(result, args.out)


def measure(args: argparse.Namespace) -> dict:
    """The timings of the config ``args.config``."""
    device = torch.device(args.device)
    trainer, source = build_trainer(args)
    corpus, config = trainer.corpus, trainer.config
    flops = workload_gflop(config, corpus.vocab_size, corpus.seq_len, args.batch_size, args.samples)
    peak_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    peaks = matmul_peak_gflops(device, peak_dtype)

    batch = corpus.train_ids[: args.batch_size].to(device)
    graph_warmup = 5 if trainer.use_graphs else 1  # CUDA graphs: 3 eager calls, 1 capture, then replays
    mle = timed(lambda: trainer.mle_step(batch), device, args.repeats, warmup=graph_warmup)

    beta = torch.full((), 10.0, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    adversarial = timed(lambda: trainer.adversarial_iteration(beta), device, max(args.repeats // 3, 1),
                        warmup=graph_warmup)
    peak_memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                   else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30

    adv, draws, algorithm = config.adversarial, trainer.draws, trainer.algorithm

    def discriminator_steps() -> None:
        samples = algorithm.sample_draws(draws, adv.batch_size * adv.d_steps)
        for fake in trainer.fake_batches(beta, samples, adv.d_steps):
            trainer.discriminator_update(fake, discriminator_step_draws(draws, adv.batch_size))

    # the G-step / D-step split, eagerly (inside a CUDA graph the two are one replay)
    g_times = timed(lambda: trainer.generator_update(algorithm.generator_step_draws(draws, adv.batch_size), beta),
                    device, max(args.repeats // 3, 1), warmup=1)
    d_times = timed(discriminator_steps, device, max(args.repeats // 3, 1), warmup=1)

    from relgan.sampling import sample_ids

    with torch.no_grad(), trainer.acc.autocast():
        sampling = timed(lambda: sample_ids(trainer.gen, args.samples, config.eval.batch_size, seed=0), device,
                         repeats=1, warmup=1 if device.type == "cuda" else 0)

    # measured again at the end: a busy moment of a shared machine must not lower the floor's peak
    peaks = {name: max(value, peaks[name]) for name, value in matmul_peak_gflops(device, peak_dtype).items()}
    peak = max(peaks.values())

    def entry(seconds: float, gflop: float) -> dict[str, float]:
        return {"seconds": seconds, "gflop": gflop, "gflops": gflop / seconds,
                "fraction_of_peak": gflop / seconds / peak, "floor_seconds": gflop / peak,
                "ratio_to_floor": seconds / (gflop / peak)}

    return {
        "config": args.config,
        "architecture": config.generator.architecture,
        "generator_parameters": trainer.parameter_counts["generator_parameters"],
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "cpu_model": cpu_model(),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({torch.get_num_threads()} threads)"),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "backend": trainer.backend.line(),
        "data": source,
        "vocab_size": corpus.vocab_size,
        "seq_len": corpus.seq_len,
        "batch_size": args.batch_size,
        "peak_gflops": peak,
        "peak_gflops_by_library": peaks,
        "mle_batch": entry(statistics.median(mle), flops["mle_batch"]),
        "adversarial_iteration": {
            **entry(statistics.median(adversarial), flops["adversarial_iteration"]),
            "cuda_graphs": trainer.use_graphs,
            "eager_g_step_seconds": statistics.median(g_times),
            "eager_d_step_seconds": statistics.median(d_times) / config.adversarial.d_steps,
            "g_step_gflop": flops["g_step"],
            "d_step_gflop": flops["d_step"],
            "peak_memory_gb": peak_memory,
            "peak_memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process max RSS",
        },
        "sample_10k": {**entry(min(sampling), flops["sample_10k"]), "num_samples": args.samples,
                       "sampling_batch_size": config.eval.batch_size},
    }


def measure_seeds(args: argparse.Namespace) -> dict:
    """Seconds per step and per-seed steps per second: one replica alone on ``args.backend`` (and on the
    reference code), then K replicas batched for each K of ``args.seeds``; throughput relative to the first."""
    from relgan.batched import BatchedReplicas

    device = torch.device(args.device)
    repeats = max(args.repeats // 3, 1)
    reference = argparse.Namespace(**{**vars(args), "backend": "reference"})
    rows, first = [], None
    for setting in [args, reference] if args.backend != "reference" else [args]:
        alone, source = build_trainer(setting)
        batch = alone.corpus.train_ids[: args.batch_size].to(device)
        beta = torch.full((), 10.0, device=device)
        warmup = 5 if alone.use_graphs else 1
        seconds = {"mle_batch": statistics.median(timed(partial(alone.mle_step, batch), device, args.repeats,
                                                        warmup)),
                   "adversarial_iteration": statistics.median(timed(partial(seeded_iteration, alone, beta), device,
                                                                    repeats, warmup))}
        first = first or seconds
        rows.append({"replicas": 1, "how": f"alone ({alone.backend.line()})", **_per_seed(seconds, 1, first)})
    assert first is not None  # the loop above ran at least once
    for count in args.seeds:
        trainers = [build_trainer(reference)[0] for _ in range(count)]
        replicas = BatchedReplicas(trainers, list(range(count)))
        batches = [(batch,)] * count
        # one batch tuple per replica: the batched MLE step is never graphed, so StepGraph passes them through
        batched = {"mle_batch": statistics.median(timed(partial(replicas.mle_step, *batches), device,  # type: ignore[arg-type]
                                                        args.repeats, 1)),
                   "adversarial_iteration": statistics.median(timed(partial(seeded_iteration, replicas, beta),
                                                                    device, repeats, 1))}
        rows.append({"replicas": count, "how": "batched (reference models, vmapped)",
                     **_per_seed(batched, count, first)})
    return {
        "config": args.config, "data": source, "batch_size": args.batch_size, "torch": torch.__version__,
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({torch.get_num_threads()} threads) {cpu_model()}"),
        "rows": rows,
    }


def _per_seed(seconds: dict[str, float], count: int, alone: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per workload: seconds per step of all ``count`` replicas, steps per second per seed, and that throughput
    over the throughput of the first replica alone (seconds ``alone``)."""
    return {name: {"seconds": value, "per_seed_steps_per_second": count / value,
                   "per_seed_throughput_vs_alone": alone[name] * count / value}
            for name, value in seconds.items()}


if __name__ == "__main__":
    main()
