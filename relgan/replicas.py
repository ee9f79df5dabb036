"""Seeds in one process: ``run.seeds: [s1, s2, ...]`` trains one replica per seed, each in its own run directory
``<run dir>/seed-<s>/`` that ``relgan sample``, ``relgan evaluate`` and a single-seed ``--resume`` read like any
other run, then writes the seed aggregate of their last evaluations to ``<run dir>/seeds.json``.

Replica k is the run with ``run.seed = s_k`` (its config, saved in its directory, says so): every step reseeds
all RNGs from (seed, rank, phase, step), so the replicas run one after another, each exactly as it would alone.
(Training them batched on one GPU, where a step is bound by latency, is not built yet.) ``--resume`` continues
every replica from its latest complete checkpoint; finished replicas only re-export, replicas that never wrote
a checkpoint start from the beginning.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from relgan.bookkeeping import METRICS_FILE, last_reports
from relgan.checkpoint import complete_checkpoints
from relgan.config import Config
from relgan.errors import CheckpointError, NonFiniteLossError
from relgan.io_utils import atomic_write_json
from relgan.metrics.aggregate import summarise_seeds
from relgan.training import Trainer, run_dir_of, setup

logger = logging.getLogger("relgan")

SUMMARY_FILE = "seeds.json"


def replica_config(config: Config, seed: int) -> Config:
    """The config of the replica with ``seed``: a single-seed run named <run.name>/seed-<seed>."""
    replica = copy.deepcopy(config)
    replica.run.seed, replica.run.seeds = seed, None
    replica.run.name = f"{config.run.name or 'relgan'}/seed-{seed}"
    return replica


def setup_replica(config: Config, seed: int, *, resume: bool, overwrite: bool, write: bool = True) -> Trainer:
    """The trainer of one replica; with ``resume`` from its latest complete checkpoint, if it has one."""
    replica = replica_config(config, seed)
    directory = run_dir_of(replica)
    start = "latest" if resume and complete_checkpoints(directory) else None
    if resume and start is None:
        logger.info("%s has no complete checkpoint; this replica starts from the beginning", directory)
    return setup(replica, resume=start, overwrite=overwrite or resume, write=write)


def train_replicas(config: Config, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any] | None:
    """Train (or continue) every replica of ``config.run.seeds``; the main process writes and returns the seed
    summary (the others return None)."""
    parent = run_dir_of(config)
    if (parent / "config.yaml").exists():
        raise CheckpointError(f"{parent} holds a single-seed run; give the replicas another run.name")
    for index, seed in enumerate(config.run.seeds):
        trainer = setup_replica(config, seed, resume=resume, overwrite=overwrite)
        try:  # the replicas share the process group, which the last one ends
            trainer.fit(keep_process_group=index + 1 < len(config.run.seeds))
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(f"replica seed {seed} ({trainer.run_dir}): {exc}") from None
        main_process = trainer.acc.is_main_process
        del trainer  # one replica's networks in memory at a time
    if not main_process:
        return None
    summary = seed_summary(config)
    atomic_write_json(parent / SUMMARY_FILE, summary)
    return summary


def seed_summary(config: Config) -> dict[str, Any]:
    """Per seed, the last evaluation of the last phase; per metric, mean, std, 95% interval and n over seeds."""
    finals = {}
    for seed in config.run.seeds:
        reports = last_reports(run_dir_of(replica_config(config, seed)) / METRICS_FILE)
        phase = "adversarial" if "adversarial" in reports else "mle"
        finals[seed] = {"phase": phase, **{k: v for k, v in reports[phase].items() if isinstance(v, float)}}
    shared = [key for key in finals[config.run.seeds[0]] if key != "phase"
              and all(isinstance(report.get(key), float) for report in finals.values())]
    return {"seeds": list(config.run.seeds),
            "metrics": {key: summarise_seeds([report[key] for report in finals.values()]) for key in shared},
            "per_seed": {str(seed): report for seed, report in finals.items()}}


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
