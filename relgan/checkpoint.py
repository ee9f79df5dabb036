"""Run directories: atomic checkpoints with a manifest, the final generator export, and loading either.

runs/<name>/
  config.yaml                resolved config
  tokenizer/                 the vocabulary (AutoTokenizer)
  labels.json                labelled data: the class names in id order
  oracle.safetensors         synthetic runs: oracle weights and its train/test samples
  metrics.jsonl              one JSON object per evaluation
  samples/                   decoded samples of each evaluation
  checkpoints/step-XXXXXXXX/ accelerate state + trainer_state.json + manifest.json (written last)
  generator/                 final export: model.safetensors, model card, tokenizer (and labels.json)

A checkpoint is written under a hidden temporary name and renamed once complete; only directories named
``step-*`` holding a ``manifest.json`` whose files all have the recorded sizes are considered complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from relgan.config import Config, GeneratorConfig
from relgan.data import LABELS_FILE, TOKENIZER_DIR, load_labels
from relgan.errors import CheckpointError, ConfigError
from relgan.io_utils import atomic_write_json
from relgan.models import SequenceGenerator, TransformerGenerator, build_generator
from relgan.plugins import config_from_dict
from relgan.tokenization import load_tokenizer

logger = logging.getLogger("relgan")

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"
EXPORT = "generator"
GENERATOR_WEIGHTS = "model.safetensors"  # accelerate saves the first prepared model (the generator) here


def checkpoint_name(global_step: int) -> str:
    return f"step-{global_step:08d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """Record every file's size and hash; written last, it marks the directory complete."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    atomic_write_json(directory / MANIFEST, {"files": entries})


def verify_checkpoint(directory: Path, check_hashes: bool = True) -> None:
    """Raise CheckpointError unless ``directory`` is a complete, untruncated checkpoint."""
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint not found: {directory}")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{directory}: incomplete checkpoint (no {MANIFEST}); resume from an earlier one")
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError):
        raise CheckpointError(f"{manifest_path}: unreadable manifest; resume from an earlier checkpoint") from None
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{directory}: incomplete checkpoint ({name} is missing)")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(
                f"{directory}: truncated checkpoint ({name} has {size} bytes, expected {entry['bytes']})"
            )
        if check_hashes and _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{directory}: corrupted checkpoint ({name} does not match its checksum)")


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (sizes checked; hashes are checked when one is loaded)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for directory in sorted(root.glob("step-*")):
        try:
            verify_checkpoint(directory, check_hashes=False)
        except CheckpointError as exc:
            logger.warning("ignoring %s", exc)
            continue
        found.append(directory)
    return found


def latest_checkpoint(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    found = complete_checkpoints(run_dir)
    if not found:
        raise CheckpointError(
            f"{run_dir}: no complete checkpoint to resume from (the run stopped before its first one); start it "
            "over with --overwrite"
        )
    return found[-1]


def publish_checkpoint(tmp: Path, final: Path, state: dict[str, Any], keep: int) -> None:
    """Complete a checkpoint written into ``tmp``: trainer state, manifest, atomic rename, pruning."""
    atomic_write_json(tmp / TRAINER_STATE, state)
    write_manifest(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    for old in complete_checkpoints(final.parent.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / TRAINER_STATE).read_text())


def load_run_config(run_dir: Path) -> Config:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a relgan run directory (no config.yaml)")
    try:
        return config_from_dict(yaml.safe_load(path.read_text()), where=str(path))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def strip_wrapper_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Remove the "module." prefix that a DDP wrapper adds to checkpointed keys."""
    return {key.removeprefix("module."): value for key, value in state.items()}


MODEL_CARD = "model.json"


def load_weights(module: nn.Module, state: dict[str, Any]) -> None:
    """``module.load_state_dict(state)``, strict except for tied aliases: accelerate saves a weight shared by
    two names (a transformer's input and output embedding) under one of them only."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    loaded = {id(param) for name, param in module.named_parameters(remove_duplicate=False) if name in state}
    aliases = {name for name, param in module.named_parameters(remove_duplicate=False) if id(param) in loaded}
    missing = [name for name in missing if name not in aliases]
    if missing or unexpected:
        raise RuntimeError(f"missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")


def write_model_card(run_dir: Path, generator: SequenceGenerator, extra: dict[str, Any]) -> None:
    """What is needed to rebuild the generator without the training code (or a pretrained directory):
    run_dir/model.json."""
    card = {
        "generator": asdict(generator.config),
        "vocab_size": generator.vocab_size,
        "seq_len": generator.seq_len,
        "start_id": generator.start_id,
        **extra,
    }
    if isinstance(generator, TransformerGenerator):
        card["transformer"] = generator.model.config.to_dict()
    atomic_write_json(run_dir / MODEL_CARD, card)


def export_generator(generator: SequenceGenerator, run_dir: Path) -> Path:
    """Write the generator weights with the model card and tokenizer atomically to ``run_dir/generator``."""
    target = run_dir / EXPORT
    tmp = run_dir / f".{EXPORT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # clone: tied weights (a transformer's input and output embedding) share storage, which safetensors refuses
    state = {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}
    save_file(state, str(tmp / GENERATOR_WEIGHTS))
    shutil.copy(run_dir / MODEL_CARD, tmp / MODEL_CARD)
    shutil.copytree(run_dir / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
    if (run_dir / LABELS_FILE).is_file():
        shutil.copy(run_dir / LABELS_FILE, tmp / LABELS_FILE)
    write_manifest(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def load_generator(run_dir: Path, checkpoint: Path | None = None) -> tuple[SequenceGenerator, Any, dict[str, Any]]:
    """(generator on the CPU, tokenizer, model card) of a run: its final export, or one of its checkpoints.

    ``run_dir`` may also be an export directory itself (it holds the model card, tokenizer and class names too).
    The card's ``labels`` are the class names of a conditional generator in id order ([] for others).
    """
    card_path = run_dir / MODEL_CARD
    if not card_path.is_file():
        raise CheckpointError(f"{run_dir}: not a relgan run or export directory (no {MODEL_CARD})")
    card = json.loads(card_path.read_text())
    num_classes = card.get("num_classes", 0)
    card["labels"] = load_labels(run_dir) if num_classes else []
    if num_classes and len(card["labels"] or ()) != num_classes:
        raise CheckpointError(
            f"{run_dir}: the generator is conditioned on {num_classes} classes but "
            f"{run_dir / LABELS_FILE} does not name them"
        )
    generator = build_generator(
        GeneratorConfig(**card["generator"]),
        card["vocab_size"],
        card["seq_len"],
        card["start_id"],
        transformer=card.get("transformer"),
        num_classes=num_classes,
    )
    if checkpoint is not None:
        weights_dir = checkpoint
    elif (run_dir / GENERATOR_WEIGHTS).is_file():
        weights_dir = run_dir
    else:
        weights_dir = run_dir / EXPORT
        if not weights_dir.is_dir():
            found = complete_checkpoints(run_dir)
            hint = (
                f"pass --checkpoint {found[-1]} (its latest complete checkpoint)"
                if found
                else "it has no complete checkpoint either"
            )
            raise CheckpointError(f"{run_dir}: no final generator export yet (the run has not finished); {hint}")
    verify_checkpoint(weights_dir)
    try:
        load_weights(generator, strip_wrapper_prefixes(load_file(str(weights_dir / GENERATOR_WEIGHTS))))
    except Exception as exc:  # another architecture or vocabulary shows up as missing keys or bad shapes
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{weights_dir}: weights do not fit the generator of {card_path} ({reason})") from None
    return generator, load_tokenizer(run_dir / TOKENIZER_DIR), card
