"""Seeds in one process: ``run.seeds: [s1, s2, ...]`` trains one replica per seed, each in its own run directory
``<run dir>/seed-<s>/`` that ``relgan sample``, ``relgan evaluate`` and a single-seed ``--resume`` read like any
other run, then writes the seed aggregate of their last evaluations to ``<run dir>/seeds.json``.

Replica k is the run with ``run.seed = s_k`` (its config, saved in its directory, says so): every step reseeds
all RNGs from (seed, rank, phase, step). ``run.replicas`` says how they train:

* ``sequential``: one after another, each exactly as it would alone (any backend, any device, DDP);
* ``batched``: in lockstep, every step one vmapped pass of the reference models for all K (batched.py), each
  replica equal to its separate run with ``run.backend = reference`` up to the rounding of batched products;
  one process, no mixed precision, no WGAN-GP, RMC or LSTM generators;
* ``auto`` (default): sequential. Batched replicas were slower than sequential ones on CPU (the C++ kernels
  train one replica faster than batching trains K / K) and have not been measured on a GPU, where they would run
  eagerly, without the CUDA graphs of a single run; auto picks them once a measurement shows them faster.

``--resume`` continues every replica from its latest complete checkpoint (batched: the latest one all replicas
have, or sequentially if they have none in common); finished replicas only re-export, replicas that never wrote
a checkpoint start from the beginning.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from relgan.algorithms import algorithm_class
from relgan.assembly import run_dir_of, setup
from relgan.batched import BatchedReplicas
from relgan.bookkeeping import METRICS_FILE, last_reports
from relgan.checkpoint import complete_checkpoints
from relgan.compare import shared_signatures
from relgan.config import Config
from relgan.errors import CheckpointError, ConfigError, NonFiniteLossError
from relgan.io_utils import atomic_write_json
from relgan.losses import penalty
from relgan.metrics.aggregate import summarise_seeds
from relgan.models import generator_class
from relgan.training import Trainer, learn

logger = logging.getLogger("relgan")

SUMMARY_FILE = "seeds.json"


def seeds_of(config: Config) -> list[int]:
    """``run.seeds`` of a config that has them."""
    if config.run.seeds is None:
        raise ValueError("run.seeds is not set: one run, no replicas")
    return config.run.seeds


def replica_config(config: Config, seed: int, *, batched: bool = False) -> Config:
    """The config of the replica with ``seed``: a single-seed run named seed-<seed> inside the replicas' run
    directory, so that its saved config loads like any run's (batched replicas run the reference models, which
    their configs say)."""
    replica = copy.deepcopy(config)
    replica.run.seed, replica.run.seeds = seed, None
    replica.run.replicas = "auto"
    replica.run.output_dir = str(run_dir_of(config))
    replica.run.name = f"seed-{seed}"
    if batched:
        replica.run.backend = "reference"
    return replica


def setup_replica(
    config: Config, seed: int, *, resume: bool | Path, overwrite: bool, write: bool = True, batched: bool = False
) -> Trainer:
    """The trainer of one replica; with ``resume`` from its latest complete checkpoint (if it has one) or from the
    checkpoint ``resume`` names."""
    replica = replica_config(config, seed, batched=batched)
    directory = run_dir_of(replica)
    if isinstance(resume, Path):
        start: str | None = str(resume)
    else:
        start = "latest" if resume and complete_checkpoints(directory) else None
        if resume and start is None:
            logger.info("%s has no complete checkpoint; this replica starts from the beginning", directory)
    return setup(replica, resume=start, overwrite=overwrite or bool(resume), write=write)


def replica_mode(config: Config) -> tuple[str, str]:
    """How the replicas train here: ("batched" or "sequential", the reason)."""
    setting = config.run.replicas
    if setting == "sequential":
        return "sequential", "run.replicas=sequential"
    # from the launcher's environment: accelerate's process state must first be made by the run's Accelerator
    obstacle = _batching_obstacle(config, int(os.environ.get("WORLD_SIZE", "1")))
    if setting == "batched":
        if obstacle:
            raise ConfigError(f"run.replicas=batched: {obstacle}; use run.replicas=sequential (or auto)")
        return "batched", "run.replicas=batched"
    # auto: batched replicas are faster than sequential ones nowhere they were measured (on CPU the C++ kernels
    # train one replica faster; on a GPU they have not been measured), so auto does not pick them
    return "sequential", obstacle or "run.replicas=auto (run.replicas=batched to batch them: docs/reproduction.md)"


def _batching_obstacle(config: Config, processes: int) -> str | None:
    """Why the replicas of ``config`` cannot train batched (None if they can)."""
    if processes > 1:
        return f"{processes} processes (DDP) train the replicas one after another"
    if config.run.mixed_precision != "no":
        return f"run.mixed_precision={config.run.mixed_precision} is not built for batched replicas"
    if penalty(config.adversarial.loss) is not None:
        return (
            f"the penalty of adversarial.loss={config.adversarial.loss} draws random numbers inside the "
            "discriminator step, which batched replicas cannot"
        )
    if not generator_class(config.generator).batched:
        return f"the {config.generator.architecture} generator is not built for batched replicas"
    if config.run.backend == "fast":
        return "batched replicas run the reference models, not run.backend=fast"
    if not algorithm_class(config.adversarial.algorithm).batched:
        return (
            f"adversarial.algorithm={config.adversarial.algorithm} draws random numbers inside its steps, "
            "which batched replicas cannot"
        )
    if config.mle.patience or config.adversarial.patience:
        return "a phase with patience stops each replica at its own step; batched replicas move in lockstep"
    return None


def train_replicas(config: Config, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any] | None:
    """Train (or continue) every replica of ``config.run.seeds``; the main process writes and returns the seed
    summary (the others return None)."""
    parent = run_dir_of(config)
    if (parent / "config.yaml").exists():
        raise CheckpointError(f"{parent} holds a single-seed run; give the replicas another run.name")
    mode, reason = replica_mode(config)
    starts = _lockstep_starts(config) if mode == "batched" and resume else {}
    if starts is None:
        mode, reason = "sequential", "the replicas have no complete checkpoint in common"
    logger.info("%d replicas, %s (%s)", len(seeds_of(config)), mode, reason)
    if mode == "batched" and starts is not None:
        main_process = _train_batched(config, starts, resume, overwrite)
    else:
        main_process = _train_sequential(config, resume, overwrite)
    if not main_process:
        return None
    summary = seed_summary(config)
    atomic_write_json(parent / SUMMARY_FILE, summary)
    return summary


def _train_sequential(config: Config, resume: bool, overwrite: bool) -> bool:
    for index, seed in enumerate(seeds_of(config)):
        trainer = setup_replica(config, seed, resume=resume, overwrite=overwrite)
        try:  # the replicas share the process group, which the last one ends
            trainer.fit(keep_process_group=index + 1 < len(seeds_of(config)))
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(f"replica seed {seed} ({trainer.run_dir}): {exc}") from None
        main_process = trainer.acc.is_main_process
        del trainer  # one replica's networks in memory at a time
    return main_process


def _train_batched(config: Config, starts: dict[int, Path | None], resume: bool, overwrite: bool) -> bool:
    trainers: list[Trainer] = []
    try:  # every replica's directory stays locked until the replicas end
        for seed in seeds_of(config):
            start = starts.get(seed) or False
            trainers.append(setup_replica(config, seed, resume=start, overwrite=overwrite or resume, batched=True))
        replicas = BatchedReplicas(trainers, list(seeds_of(config)))
        learn(replicas, replicas.book)
        replicas.finish()
    finally:
        for trainer in trainers:
            trainer.release_lock()
    return trainers[0].acc.is_main_process


def _lockstep_starts(config: Config) -> dict[int, Path | None] | None:
    """Where batched replicas resume: each from its checkpoint of the latest step all of them have (none: all
    from the beginning); None when some have checkpoints but none in common."""
    found = {
        seed: {path.name: path for path in complete_checkpoints(run_dir_of(replica_config(config, seed)))}
        for seed in seeds_of(config)
    }
    if not any(found.values()):
        return {seed: None for seed in found}
    common = set.intersection(*(set(names) for names in found.values()))
    if not common:
        return None
    latest = max(common)
    return {seed: names[latest] for seed, names in found.items()}


def seed_summary(config: Config) -> dict[str, Any]:
    """Per seed, the last evaluation of the last phase; per metric, mean, std, 95% interval and n over seeds."""
    finals: dict[int, dict[str, float]] = {}
    phases: dict[int, str] = {}
    lasts = []
    for seed in seeds_of(config):
        reports = last_reports(run_dir_of(replica_config(config, seed)) / METRICS_FILE)
        phases[seed] = "adversarial" if "adversarial" in reports else "mle"
        lasts.append(reports[phases[seed]])
        finals[seed] = {k: v for k, v in reports[phases[seed]].items() if isinstance(v, float)}
    signatures = shared_signatures(lasts, f"the replicas of {run_dir_of(config)}")
    seeds = seeds_of(config)
    shared = [key for key in finals[seeds[0]] if all(key in report for report in finals.values())]
    return {
        "seeds": list(seeds),
        "metrics": {key: summarise_seeds([report[key] for report in finals.values()]) for key in shared},
        "per_seed": {str(seed): {"phase": phases[seed], **report} for seed, report in finals.items()},
        "signatures": signatures,
    }


def summary_lines(summary: dict[str, Any], directory) -> str:
    """The seed summary's evaluation metrics as text (losses, norms and beta are in the file): one line per
    metric, mean ± 95% half-width (n seeds)."""
    lines = [f"{len(summary['seeds'])} replicas in {directory}/seed-*; seed summary in {directory / SUMMARY_FILE}"]
    for key, stats in summary["metrics"].items():
        if key == "beta" or key.endswith(("loss", "norm")):
            continue
        spread = f" ± {stats['ci95']:.4f}" if stats["ci95"] is not None else ""
        lines.append(f"  {key}: {stats['mean']:.4f}{spread} (n = {stats['n']})")
    return "\n".join(lines)
