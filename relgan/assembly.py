"""Run assembly: what a run is made of before it learns. The accelerator, the corpus, the run directory (fresh,
overwritten or resumed, with the checks that a resumed run continues the run it says it does) and the
:class:`relgan.training.Trainer`; ``relgan train --dry-run``'s summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from relgan.algorithms import algorithm_class
from relgan.bookkeeping import METRICS_FILE, Progress
from relgan.checkpoint import (
    EXPORT,
    latest_checkpoint,
    load_run_config,
    read_trainer_state,
    verify_checkpoint,
    write_model_card,
)
from relgan.config import Config, dotted, save_config, schedule_horizon
from relgan.data import Corpus, load_corpus, save_corpus_artifacts
from relgan.errors import CheckpointError, DataError
from relgan.io_utils import append_jsonl
from relgan.models import generator_class
from relgan.pretrained import load_pretrained_tokenizer
from relgan.run_directory import RunLock, prepare_fresh
from relgan.runtime import build_accelerator, configure_threads
from relgan.training import Trainer

# keys a resumed run must share with the run it continues
# What --resume may change: how the run is evaluated, logged, checkpointed and computed, not what it trains.
# Every other key must equal the run's own; the budgets and beta's horizon have rules of their own (_check_resume).
MAY_CHANGE_ON_RESUME = (
    "eval.",
    "mle.eval_every",
    "mle.checkpoint_every",
    "adversarial.eval_every",
    "adversarial.checkpoint_every",
    "run.name",
    "run.output_dir",
    "run.seeds",
    "run.replicas",
    "run.cpu",
    "run.tracker",
    "run.log_every",
    "run.keep_checkpoints",
    "run.backend",
    "run.cuda_graphs",
    "run.num_threads",
    # where the same data and tokenizer lie now (their vocabulary and classes are checked against the run's)
    "data.train_file",
    "data.test_file",
    "data.tokenizer",
    "generator.pretrained",  # the start of MLE: a resumed run's weights come from its checkpoint
)
BUDGETS = ("mle.epochs", "adversarial.steps", "gumbel.horizon")
# the keys of the adversarial phase: until it begins they have acted on nothing, so a finished MLE run may be
# continued by any algorithm (experiments/reproduce.py branches every GAN of a seed from one MLE run)
ADVERSARIAL_PHASE = ("adversarial.", "gumbel.")


def run_dir_of(config: Config) -> Path:
    return Path(config.run.output_dir) / (config.run.name or "relgan")


def setup(
    config: Config,
    *,
    resume: str | None = None,
    overwrite: bool = False,
    write: bool = True,
    refuse_finished: bool = False,
) -> Trainer:
    """Accelerator, corpus and trainer of a run; with ``write`` the run directory is created or resumed, and
    locked against a second writer until the trainer's run ends (:meth:`Trainer.fit`). ``refuse_finished``: a
    resumed run that has finished is an error (the replicas of run.seeds re-export their finished ones instead)."""
    run_dir = run_dir_of(config)
    configure_threads(config.run)
    accelerator = build_accelerator(config.run, run_dir)
    set_seed(config.run.seed)
    if resume is not None and not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}; start the run without --resume")
    lock = RunLock(run_dir) if write and accelerator.is_main_process else None
    if lock is not None:
        lock.acquire()
    try:
        trainer = _assemble(config, run_dir, accelerator, resume, overwrite, write, refuse_finished)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    trainer.lock = lock
    return trainer


def _assemble(
    config: Config,
    run_dir: Path,
    accelerator: Accelerator,
    resume: str | None,
    overwrite: bool,
    write: bool,
    refuse_finished: bool,
) -> Trainer:
    checkpoint = None
    if resume is not None:
        checkpoint = latest_checkpoint(run_dir) if resume == "latest" else Path(resume)
        verify_checkpoint(checkpoint)
        progress = read_trainer_state(checkpoint)["progress"]
        _check_resume(load_run_config(run_dir), config, run_dir, progress)
        if refuse_finished:
            _refuse_finished(config, run_dir, progress)
    elif write and accelerator.is_main_process:
        prepare_fresh(run_dir, overwrite)
    accelerator.wait_for_everyone()
    sizes = _config_sizes(config)
    if sizes is not None:  # before the corpus: an impossible length must not be allocated to be refused
        seq_len, vocab_size, length_key = sizes
        _check_memory(config, seq_len, vocab_size, accelerator.device, length_key)
    pretrained = config.generator.pretrained
    with accelerator.main_process_first():
        corpus = load_corpus(
            config.data,
            saved=run_dir if resume is not None else None,
            tokenizer=load_pretrained_tokenizer(pretrained) if pretrained else None,
        )
    _check_corpus_size(corpus, config, accelerator.num_processes)
    _check_memory(config, corpus.seq_len, corpus.vocab_size, accelerator.device)
    trainer = Trainer(config, corpus, run_dir, accelerator)
    if write and accelerator.is_main_process:
        save_config(config, run_dir / "config.yaml")
        save_corpus_artifacts(corpus, run_dir)
        extra = {
            "eos_id": corpus.eos_id,
            "seed": config.run.seed,
            "sample_batch_size": config.eval.batch_size,
            "num_classes": trainer.gen.num_classes,
        }
        write_model_card(run_dir, trainer.gen, extra)
        if resume is None and corpus.oracle is not None:
            append_jsonl(
                run_dir / METRICS_FILE,
                {"phase": "reference", "step": 0, "global_step": 0, "nll_oracle": corpus.oracle.nll(corpus.test_ids)},
            )
    accelerator.wait_for_everyone()
    if checkpoint is not None:
        trainer.restore(checkpoint)
    return trainer


def dry_run_summary(trainer: Trainer) -> dict[str, Any]:
    corpus = trainer.corpus
    return {
        "vocab_size": corpus.vocab_size,
        "seq_len": corpus.seq_len,
        "train_sentences": len(corpus.train_ids),
        "test_sentences": len(corpus.test_ids),
        **trainer.parameter_counts,
        "device": str(trainer.acc.device),
        "num_processes": trainer.acc.num_processes,
        "backend": trainer.backend.line(),
    }


def _check_resume(saved: Config, wanted: Config, run_dir: Path, progress: dict[str, Any]) -> None:
    """--resume continues the same run, or refuses in one line naming the key and both values: only the keys of
    MAY_CHANGE_ON_RESUME may change (and those of the adversarial phase before it begins), a budget may grow but
    not fall below what was done (nor, once the adversarial phase has begun, mle.epochs change, unless MLE stopped
    on its patience), and beta's schedule keeps its horizon (a run that may be extended sets gumbel.horizon up
    front)."""
    old, new = dotted(saved.to_dict()), dotted(wanted.to_dict())
    unused = ADVERSARIAL_PHASE if not progress["adv_step"] else ()
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after or key.startswith((*MAY_CHANGE_ON_RESUME, *unused)) or key in BUDGETS:
            continue
        raise CheckpointError(
            f"{run_dir} was trained with {key} = {before!r} but the config asks for {after!r}; "
            "resume with the run's own settings or start a new run.name"
        )
    done = {"mle.epochs": progress["epoch"], "adversarial.steps": progress["adv_step"]}
    for key, count in done.items():
        if new[key] < count:
            raise CheckpointError(
                f"{run_dir} was trained with {key} = {old[key]!r} and has done {count}; the config asks for "
                f"{new[key]!r}, fewer than done: resume with at least {count}"
            )
    # a phase that ran out of patience before its cap is the same run under any cap it did not reach
    if progress["adv_step"] and new["mle.epochs"] != old["mle.epochs"] and not progress["mle_stopped"]:
        raise CheckpointError(
            f"{run_dir} was trained with mle.epochs = {old['mle.epochs']!r} but the config asks for "
            f"{new['mle.epochs']!r}; its adversarial phase has begun, so its MLE phase is over"
        )
    rising = algorithm_class(saved.adversarial.algorithm).relaxed and saved.gumbel.schedule not in ("no", "learned")
    if rising and saved.adversarial.steps and schedule_horizon(saved) != schedule_horizon(wanted):
        raise CheckpointError(
            f"{run_dir} was trained with beta's schedule over {schedule_horizon(saved)} iterations (gumbel.horizon "
            f"= {saved.gumbel.horizon!r}, adversarial.steps = {saved.adversarial.steps}); the config asks for "
            f"{schedule_horizon(wanted)}, which changes beta mid-run; a run that may be extended sets gumbel.horizon "
            "up front (at least the steps it may reach): start a new run.name"
        )


def _refuse_finished(config: Config, run_dir: Path, progress: dict[str, Any]) -> None:
    """A finished run (its budgets done, its generator exported) has nothing to resume."""
    counters = Progress(**progress)
    done = counters.mle_over(config.mle.epochs) and counters.adversarial_over(config.adversarial.steps)
    if done and (run_dir / EXPORT).is_dir():
        raise CheckpointError(
            f"{run_dir} has finished ({progress['epoch']} MLE epochs, {progress['adv_step']} adversarial iterations): "
            "nothing to resume; raise mle.epochs or adversarial.steps to train on (a phase stopped by its patience "
            "is over)"
        )


def _check_memory(
    config: Config, seq_len: int, vocab_size: int, device: torch.device, length_key: str = "data.seq_len"
) -> None:
    """Refuse sizes whose first step cannot fit, before anything of that size is allocated: a step keeps about
    ``floats_per_token`` float32s per sentence and position (the generator's), an adversarial iteration also the
    relaxed one-hots [B, T, V] of its samples for every D step, and what its algorithm's generator step holds
    besides (``Algorithm.step_floats``: Gumbel-Rao's K draws, SeqGAN's rollouts). Called with the config's own
    sizes before the corpus is built, then with the corpus's."""
    available = available_memory(device)
    if available is None:
        return
    per_token = generator_class(config.generator).floats_per_token(config.generator, vocab_size)
    mle = config.mle.batch_size * per_token * seq_len if config.mle.epochs else 0
    adversarial = config.adversarial.batch_size * (per_token + config.adversarial.d_steps * vocab_size) * seq_len
    extra, key = algorithm_class(config.adversarial.algorithm).step_floats(config, seq_len, vocab_size)
    if not config.adversarial.steps:
        adversarial = extra = 0
    need = 4 * max(mle, adversarial + extra)
    if need <= available:
        return
    culprit = (
        f"{key}: the algorithm's generator step"
        if extra > adversarial
        else f"{length_key}: one batch at T = {seq_len} (V = {vocab_size})"
    )
    lower = key if extra > adversarial else f"{length_key}, mle.batch_size or adversarial.batch_size"
    raise DataError(
        f"{culprit} needs about {need / 2**30:.1f} GB, more than the {available / 2**30:.1f} GB available on "
        f"{device.type}; lower {lower}"
    )


def _config_sizes(config: Config) -> tuple[int, int, str] | None:
    """(T, a lower bound of V, the key of T) where the config alone fixes T (the oracle's, or data.seq_len)."""
    data = config.data
    if data.source == "oracle":
        return data.oracle.seq_len, data.oracle.vocab_size, "data.oracle.seq_len"
    if data.seq_len is not None:
        return data.seq_len, 4, "data.seq_len"  # V: the specials alone
    return None


def available_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on ``device`` (None where it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _check_corpus_size(corpus: Corpus, config: Config, processes: int) -> None:
    need = max(
        config.mle.batch_size * processes if config.mle.epochs else 0,
        config.adversarial.batch_size if config.adversarial.steps else 0,
    )
    source = config.data.train_file if config.data.source == "files" else f"data.{config.data.source}"
    if len(corpus.train_ids) < need:
        raise DataError(
            f"{source}: {len(corpus.train_ids)} training sentences, fewer than one batch ({need}); "
            "use more data or a smaller mle.batch_size / adversarial.batch_size"
        )
    if corpus.train_labels is not None and corpus.label_names is not None:
        counts = torch.bincount(corpus.train_labels, minlength=corpus.num_classes)
        smallest = int(counts.argmin())
        if counts[smallest] < need:
            raise DataError(
                f"{source}: class {corpus.label_names[smallest]!r} has {int(counts[smallest])} training sentences, "
                f"fewer than one batch ({need}); add sentences, merge or drop the class, or use a smaller "
                "mle.batch_size / adversarial.batch_size"
            )
