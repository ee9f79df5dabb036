"""Run assembly: what a run is made of before it learns. The accelerator, the corpus, the run directory (fresh,
overwritten or resumed, with the checks that a resumed run continues the run it says it does) and the
:class:`relgan.training.Trainer`; ``relgan train --dry-run``'s summary."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from relgan.bookkeeping import METRICS_FILE
from relgan.checkpoint import latest_checkpoint, load_run_config, verify_checkpoint, write_model_card
from relgan.config import Config, save_config
from relgan.data import Corpus, load_corpus, save_corpus_artifacts
from relgan.errors import CheckpointError, DataError
from relgan.io_utils import append_jsonl
from relgan.pretrained import load_pretrained_tokenizer
from relgan.runtime import build_accelerator, configure_threads
from relgan.training import Trainer

# keys a resumed run must share with the run it continues
COMPATIBLE_SECTIONS = ("generator", "discriminator")
COMPATIBLE_DATA_KEYS = (
    "source",
    "tokenization",
    "min_frequency",
    "max_vocab_size",
    "seq_len",
    "oracle",
    "labelled",
    "label_column",
)


def run_dir_of(config: Config) -> Path:
    return Path(config.run.output_dir) / (config.run.name or "relgan")


def setup(config: Config, *, resume: str | None = None, overwrite: bool = False, write: bool = True) -> Trainer:
    """Accelerator, corpus and trainer of a run; with ``write`` the run directory is created or resumed."""
    run_dir = run_dir_of(config)
    configure_threads(config.run)
    accelerator = build_accelerator(config.run, run_dir)
    set_seed(config.run.seed)
    checkpoint = None
    if resume is not None:
        checkpoint = latest_checkpoint(run_dir) if resume == "latest" else Path(resume)
        verify_checkpoint(checkpoint)
        _check_compatible(load_run_config(run_dir), config, run_dir)
    elif write and accelerator.is_main_process:
        _fresh_run_dir(run_dir, overwrite)
    accelerator.wait_for_everyone()
    pretrained = config.generator.pretrained
    with accelerator.main_process_first():
        corpus = load_corpus(
            config.data,
            saved=run_dir if resume is not None else None,
            tokenizer=load_pretrained_tokenizer(pretrained) if pretrained else None,
        )
    _check_corpus_size(corpus, config, accelerator.num_processes)
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


def _fresh_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise CheckpointError(
                f"run directory {run_dir} already exists; continue it with --resume, start over with "
                "--overwrite, or pick another run.name"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _check_compatible(saved: Config, wanted: Config, run_dir: Path) -> None:
    """A resumed run must keep the architecture and data settings of the run it continues."""
    old, new = saved.to_dict(), wanted.to_dict()
    pairs = [(f"{s}.{k}", old[s][k], new[s][k]) for s in COMPATIBLE_SECTIONS for k in old[s]]
    pairs += [(f"data.{k}", old["data"][k], new["data"][k]) for k in COMPATIBLE_DATA_KEYS]
    for key, before, after in pairs:
        if before != after:
            raise CheckpointError(
                f"{run_dir} was trained with {key} = {before!r} but the config asks for {after!r}; "
                "resume with the run's own settings or start a new run.name"
            )


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
