"""The ``relgan`` command: train, sample, evaluate. Problems with the input end in one line on stderr."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from relgan.config import BACKENDS, PROTOCOLS
from relgan.errors import RelganError, TrainingInterrupted
from relgan.metrics.registry import metric_names
from relgan.plugins import describe_keys

if TYPE_CHECKING:
    from relgan.decoding import Decoding

logger = logging.getLogger("relgan")


def _configure_logging(debug: bool) -> None:
    class _Lower(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{record.levelname.lower()}: {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lower())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # datasets reads these when it is imported: only the runs that load a dataset pay for that import
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    from relgan.assembly import dry_run_summary, setup
    from relgan.plugins import load_config

    config = load_config(args.config, args.overrides)
    if config.run.seeds is not None:
        return _train_replicas(config, args)
    resume = args.resume_from or ("latest" if args.resume else None)
    trainer = setup(config, resume=resume, overwrite=args.overwrite, write=not args.dry_run, refuse_finished=True)
    if args.dry_run:
        if trainer.acc.is_main_process:
            print(json.dumps(dry_run_summary(trainer)))
        return 0
    reports = trainer.fit()
    if trainer.acc.is_main_process:
        print(_final_summary(reports, trainer.run_dir))
    return 0


def _train_replicas(config, args: argparse.Namespace) -> int:
    from relgan import replicas
    from relgan.assembly import dry_run_summary, run_dir_of

    if args.resume_from:
        raise RelganError(
            "--resume-from names one checkpoint; with run.seeds use --resume (each replica continues "
            "from its own latest checkpoint)"
        )
    if args.dry_run:
        trainer = replicas.setup_replica(config, config.run.seeds[0], resume=False, overwrite=False, write=False)
        if trainer.acc.is_main_process:
            dirs = [str(run_dir_of(replicas.replica_config(config, seed))) for seed in config.run.seeds]
            mode, reason = replicas.replica_mode(config)
            print(json.dumps({**dry_run_summary(trainer), "replicas": dirs, "replica_training": f"{mode} ({reason})"}))
        return 0
    summary = replicas.train_replicas(config, resume=args.resume, overwrite=args.overwrite)
    if summary is not None:
        print(replicas.summary_lines(summary, run_dir_of(config)))
    return 0


def _final_summary(reports: dict, run_dir: Path) -> str:
    """Each metric after MLE and after adversarial training, the oracle's own NLL, and a few samples."""
    lines = [f"run directory: {run_dir}"]
    phases = [
        (label, reports[phase])
        for label, phase in (("after MLE", "mle"), ("after adversarial", "adversarial"))
        if phase in reports
    ]
    for key in ("nll_oracle", "nll_gen", "nll_test", "bleu-2", "bleu-3", "bleu-4", "bleu-5"):
        values = [f"{label}: {report[key]:.4f}" for label, report in phases if isinstance(report.get(key), float)]
        if not values:
            continue
        if key == "nll_oracle" and "reference" in reports:
            values.append(f"oracle on its own test data: {reports['reference']['nll_oracle']:.4f}")
        lines.append(f"{key.upper() if key.startswith('nll') else key}: " + " | ".join(values))
    last = reports.get("adversarial") or reports.get("mle")
    if last and last.get("samples"):
        lines += ["samples:", *(f"  {text}" for text in last["samples"])]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- sample


def _sample(args: argparse.Namespace) -> int:
    import torch

    from relgan import fast
    from relgan.checkpoint import load_generator
    from relgan.run_directory import output_file
    from relgan.sampling import sample_ids
    from relgan.tokenization import decode

    _at_least(args.num, 1, "--num")
    decoding = _decoding(args.temperature, args.top_k, args.top_p)
    _at_least(args.batch_size, 1, "--batch-size")
    _at_least(args.seed, 0, "--seed")
    device = _device(args.device)
    if args.out:
        output_file(Path(args.out), "--out")
    generator, tokenizer, card = load_generator(Path(args.run), Path(args.checkpoint) if args.checkpoint else None)
    names = card["labels"]
    if args.label is not None and args.label not in names:
        known = f"its labels are {', '.join(names)}" if names else "the run's generator is unconditional"
        raise RelganError(f"--label {args.label!r}: not a class of {args.run}; {known}")
    generator.to(device).eval()
    fast.apply(generator, setting=args.backend, device=device)
    seed = card["seed"] if args.seed is None else args.seed
    # (class id, line prefix): one class, or every class in turn as label<TAB>sentence lines, or no class
    if args.label is not None:
        plan = [(names.index(args.label), "")]
    else:
        plan = [(index, f"{name}\t") for index, name in enumerate(names)] or [(None, "")]
    lines = []
    for label, prefix in plan:
        with torch.no_grad():
            ids = sample_ids(
                generator,
                args.num,
                args.batch_size or card["sample_batch_size"],
                seed,
                decoding=decoding,
                label=label,
            )
        lines += [prefix + text for text in decode(tokenizer, ids, card["eos_id"])]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# ------------------------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace) -> int:
    from relgan import report as reports
    from relgan.run_directory import output_file

    metrics = _metrics(args.metrics)
    _at_least(args.num_samples, 1, "--num-samples")
    _at_least(args.seed, 0, "--seed")
    device = _device(args.device)
    if args.out:
        output_file(Path(args.out), "--out")
    if args.run:
        if args.tokenize:
            raise RelganError("--tokenize has no effect with --run: a run's metrics split text as the run does")
        run_dir = Path(args.run)
        checkpoint = Path(args.checkpoint) if args.checkpoint else None
        if args.decoding_sweep or args.temperature_sweep:
            option = "--decoding-sweep" if args.decoding_sweep else "--temperature-sweep"
            if args.decoding_sweep and args.temperature_sweep:
                raise RelganError("--temperature-sweep and --decoding-sweep: give one (temperatures are rules too)")
            if args.judge_lm:
                raise RelganError(f"--judge-lm has no effect with {option}; evaluate one rule")
            rules = _rules(args.decoding_sweep or args.temperature_sweep, option)
            if args.temperature_sweep and any(rule.truncates for rule in rules):
                raise RelganError("--temperature-sweep takes temperatures; sweep top-k and top-p with --decoding-sweep")
            curve = reports.decoding_sweep(
                run_dir, checkpoint, args.protocol, rules, args.num_samples, args.seed, device
            )
            out = Path(args.out or run_dir / f"{option.removeprefix('--')}-{args.protocol}.json")
            reports.write_report(curve, out)
            for point in curve["points"]:
                print(" ".join(f"{k}={v:.4f}" for k, v in point.items() if isinstance(v, float)))
            plots = reports.plot_sweep(curve, out)
            print(
                f"curve written to {out}"
                + (" and " + ", ".join(map(str, plots)) if plots else " (install the 'plot' extra for plots)")
            )
            return 0
        report, _ = reports.evaluate_run(
            run_dir,
            checkpoint,
            args.protocol,
            metrics,
            args.num_samples,
            args.seed,
            device,
            args.judge_lm,
        )
        out = Path(args.out or run_dir / f"evaluation-{args.protocol}.json")
    else:
        if not (args.samples and args.references):
            raise RelganError("evaluate needs --run DIR, or --samples FILE and --references FILE")
        report = reports.evaluate_files(
            Path(args.samples),
            Path(args.references),
            Path(args.train) if args.train else None,
            args.protocol,
            metrics,
            judge_lm=args.judge_lm,
            tokenize=args.tokenize or "nltk",
        )
        out = Path(args.out or f"evaluation-{args.protocol}.json")
    if report.get("fed_notice"):
        logger.warning(report["fed_notice"])
    print(reports.format_table(report))
    reports.write_report(report, out)
    print(f"report written to {out}")
    return 0


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RelganError(f"{option}: {text!r} is not a number") from None


def _temperature(value: float, option: str) -> float:
    """A softmax temperature: finite and > 0."""
    if not math.isfinite(value) or value <= 0:
        raise RelganError(f"{option}: a temperature must be a finite number > 0, got {value}")
    return value


def _rules(text: str, option: str) -> list[Decoding]:
    """The decoding rules of a sweep option (relgan/decoding.py's parse_rules), or its one-line error."""
    from relgan.decoding import parse_rules

    try:
        return parse_rules(text)
    except ValueError as exc:
        raise RelganError(f"{option}: {exc}") from None


def _decoding(temperature: float, top_k: int, top_p: float) -> Decoding:
    """The decoding rule of --temperature, --top-k and --top-p (relgan/decoding.py)."""
    from relgan.decoding import Decoding

    _temperature(temperature, "--temperature")
    _at_least(top_k, 0, "--top-k")
    if not 0 < top_p <= 1:
        raise RelganError(f"--top-p must be in (0, 1] (1: no truncation), got {top_p}")
    return Decoding(temperature, top_k, top_p)


def _at_least(value: int | None, low: int, option: str) -> None:
    """An optional count or seed flag: absent, or at least ``low`` (the config keys' own ranges)."""
    if value is not None and value < low:
        raise RelganError(f"{option} must be >= {low}, got {value}")


def _metrics(text: str | None) -> list[str] | None:
    """The --metrics list; an unknown name is an error that lists the known ones."""
    if not text:
        return None
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    known = metric_names()
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise RelganError(f"--metrics: unknown metric {(unknown or [text])[0]!r}; known: {', '.join(known)}")
    return chosen


def _device(name: str) -> str:
    """The device to run on: ``auto`` picks CUDA when it is there; asking for CUDA where it is not is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RelganError(f"--device {name!r}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise RelganError(f"--device {name}: no such CUDA device on this machine; use --device cpu")
    return name


# ------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relgan", description="RelGAN text GANs: train, sample, evaluate.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="MLE pretraining then adversarial training (python train.py ...)",
        description="Train a generator: MLE pretraining, then adversarial training. Launch on several "
        "GPUs/nodes with `accelerate launch train.py ...`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (override any with section.key=value):\n" + describe_keys(),
    )
    train.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. adversarial.steps=500")
    train.add_argument("--resume", action="store_true", help="continue runs/<name> from its latest complete checkpoint")
    train.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint directory")
    train.add_argument("--overwrite", action="store_true", help="delete an existing run directory and start over")
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="build data and models, print one JSON line (sizes, parameter counts) and exit",
    )
    train.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    train.set_defaults(handler=_train)

    sample = commands.add_parser(
        "sample",
        help="write sentences sampled from a trained generator",
        description="Sample sentences from a run's final generator or a checkpoint.",
    )
    sample.add_argument("--run", required=True, help="run directory (runs/<name>) or its generator/ export")
    sample.add_argument("--checkpoint", help="a checkpoint directory of the run instead of the final export")
    sample.add_argument("--num", type=int, default=100, help="number of sentences (per class; default 100)")
    sample.add_argument(
        "--label",
        help="class to sample (a conditional run; default: every class in turn, written as label<TAB>sentence lines)",
    )
    sample.add_argument("--seed", type=int, help="sampling seed (default: the run's seed, as in its evaluations)")
    sample.add_argument("--temperature", type=float, default=1.0, help="softmax temperature tau (default 1)")
    sample.add_argument("--top-k", type=int, default=0, help="sample among the k most probable tokens (0: all)")
    sample.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        help="nucleus sampling: among the fewest most probable tokens whose probability reaches p (1: all)",
    )
    sample.add_argument("--batch-size", type=int, help="sampling batch size (default: the run's eval.batch_size)")
    sample.add_argument("--out", help="output file (default: stdout), one sentence per line")
    sample.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    sample.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="reference: relgan/models as written; auto: verified fast paths (default)",
    )
    sample.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sample.set_defaults(handler=_sample)

    evaluate = commands.add_parser(
        "evaluate",
        help="BLEU, Self-BLEU, NLL, diversity, LM judges, FED and MAUVE of a run or of text files",
        description="Evaluate a run's generator (--run) or any samples file (--samples/--references).",
    )
    evaluate.add_argument("--run", help="run directory: sample from its final generator (or --checkpoint)")
    evaluate.add_argument("--checkpoint", help="a checkpoint directory of the run")
    evaluate.add_argument("--samples", help="text file of generated sentences, one per line")
    evaluate.add_argument("--references", help="text file of reference (test) sentences")
    evaluate.add_argument("--train", help="training sentences: novelty, and the LM judges (lm_score, reverse_lm_score)")
    evaluate.add_argument(
        "--tokenize",
        help="how --samples/--references split into the units of BLEU, Self-BLEU and diversity: nltk (default), "
        "whitespace, char (characters without spaces: Chinese, Japanese, Thai) or a tokenizer directory; a run "
        "(--run) uses its own tokenisation",
    )
    evaluate.add_argument(
        "--protocol",
        default="relgan",
        choices=PROTOCOLS,
        help="relgan: 200 samples vs all references; texygen: all samples vs 500 references; "
        "full: all vs all (default relgan)",
    )
    evaluate.add_argument(
        "--metrics",
        help="comma-separated metrics of relgan.metrics.registry (default: all that apply; fed, which is FED and "
        "MAUVE, when the 'fed' extra is installed)",
    )
    evaluate.add_argument(
        "--judge-lm",
        metavar="DIR",
        help="also score the samples under a causal LM saved there with save_pretrained "
        "(judge_lm_nll, judge_lm_ppl; nothing is downloaded)",
    )
    evaluate.add_argument("--num-samples", type=int, help="samples to draw (default: the run's eval.num_samples)")
    evaluate.add_argument("--seed", type=int, help="sampling seed (default: the run's seed)")
    evaluate.add_argument(
        "--temperature-sweep",
        metavar="T1,T2,...",
        help="sample at each softmax temperature; write the quality-diversity curve (JSON + PNG)",
    )
    evaluate.add_argument(
        "--decoding-sweep",
        metavar="RULES",
        help="sample under each decoding rule: temperatures and T=, k=, p= settings joined by ':' "
        "(0.8,1.0,k=40,p=0.9,T=0.8:p=0.95); write the curves (JSON + PNG)",
    )
    evaluate.add_argument("--out", help="JSON report path (default: <run>/evaluation-<protocol>.json)")
    evaluate.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    evaluate.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    evaluate.set_defaults(handler=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # overrides may follow flags (train --config c.yaml --resume a.b=1), which plain parse_args refuses
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if args.command != "train" or item.startswith("-") or "=" not in item]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if args.command == "train":
        args.overrides = [*args.overrides, *extra]
    _configure_logging(args.debug)
    try:
        return args.handler(args)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except RelganError as exc:
        if args.debug:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())


def train_entry() -> None:
    sys.exit(main(["train", *sys.argv[1:]]))


def evaluate_entry() -> None:
    sys.exit(main(["evaluate", *sys.argv[1:]]))
