"""Run bookkeeping beside the training loop: counters, per-step seeds, NaN-checked logs, progress bars, stop
signals, evaluations and atomic checkpoints of one run directory. The learning algorithm is in training.py."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from tqdm.auto import tqdm

from relgan import selection
from relgan.checkpoint import CHECKPOINTS, checkpoint_name, publish_checkpoint, read_trainer_state, verify_checkpoint
from relgan.config import Config, dotted
from relgan.errors import CheckpointError, NonFiniteLossError, TrainingInterrupted
from relgan.io_utils import append_jsonl, atomic_write_text
from relgan.runtime import StopSignals, seed_step

METRICS_FILE = "metrics.jsonl"
BEST_MLE_FILE = "best-mle.safetensors"  # the MLE generator's weights at its best evaluation (mle.patience)

logger = logging.getLogger("relgan")


class _TiedWeightNotice(logging.Filter):
    """accelerate warns at every checkpoint that it saved a tied weight (the transformer's input and output
    embedding) under one name; its own ``load_state`` and :func:`relgan.checkpoint.load_weights` restore both."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_TiedWeightNotice())


@dataclass
class Progress:
    """Counters saved with every checkpoint."""

    epoch: int = 0  # completed MLE epochs
    batch_in_epoch: int = 0  # MLE batches done in the current epoch
    mle_step: int = 0  # MLE batches done
    adv_step: int = 0  # adversarial iterations done
    mle_stopped: bool = False  # the MLE phase ran out of patience (mle.patience) before mle.epochs
    adv_stopped: bool = False  # the adversarial phase ran out of patience before adversarial.steps

    @property
    def global_step(self) -> int:
        return self.mle_step + self.adv_step

    def mle_over(self, epochs: int) -> bool:
        return self.mle_stopped or self.epoch >= epochs

    def adversarial_over(self, steps: int) -> bool:
        return self.adv_stopped or self.adv_step >= steps


class RunBook:
    """Everything of a run that is not the learning algorithm.

    The loop (``training.learn``) calls :meth:`step_done` after every step, :meth:`epoch_done` after every MLE
    epoch and :meth:`iteration_done` after every adversarial iteration; the book logs, evaluates, checkpoints and
    stops when due.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        accelerator: Accelerator,
        evaluation_report: Callable[[str, int], dict[str, Any]],
        networks: Mapping[str, nn.Module],
    ) -> None:
        self.config, self.run_dir, self.acc = config, run_dir, accelerator
        self.evaluation_report = evaluation_report
        self.networks = networks  # what a checkpoint holds: checked finite before one is written
        # for the disk-full message
        self.weight_bytes = sum(p.numel() * p.element_size() for n in networks.values() for p in n.parameters())
        self.progress = Progress()
        self.stop = StopSignals()
        self.last_checkpoint: Path | None = None
        self.last_losses: dict[str, float] = {}  # means of the last log interval
        self.last_step: dict[str, float] = {}  # the values of the last step
        self._pending: list[tuple[str, int, dict[str, Tensor]]] = []
        self._bar: tqdm | None = None

    # ------------------------------------------------------------------------------------------- phases

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Trackers started, stop signals turned into a flag; pending logs written at the end."""
        self.acc.init_trackers(self.config.run.name or "relgan", config=_tracked(self.config.to_dict()))
        with self.stop.installed():
            yield
        self.flush()

    @contextlib.contextmanager
    def phase(self, name: str, total: int, done: int, unit: str) -> Iterator[None]:
        """A progress bar for one phase."""
        self._bar = tqdm(
            total=total, initial=done, desc=name, unit=unit, disable=not self.acc.is_main_process, dynamic_ncols=True
        )
        try:
            yield
        finally:
            self._bar.close()
            self._bar = None

    def epoch_batches(self, loader) -> Iterator[tuple[Tensor, ...]]:
        """The MLE batches left in the current epoch (resumed mid-epoch after a checkpoint), each step seeded."""
        p = self.progress
        loader.set_epoch(p.epoch)
        if p.batch_in_epoch:
            loader = self.acc.skip_first_batches(loader, p.batch_in_epoch)
        if self._bar is not None:
            self._bar.set_description(f"MLE epoch {p.epoch + 1}/{self.config.mle.epochs}")
        for batch in loader:  # (ids,) or, for conditional models, (ids, class ids)
            self.seed("mle", p.mle_step)
            yield tuple(batch)

    def seed(self, phase: str, step: int) -> None:
        """Reseed every RNG from (run seed, rank, phase, step): resumed runs continue exactly."""
        seed_step(self.config.run.seed, self.acc.process_index, phase, step)

    def step_done(self, phase: str, **values: Tensor) -> None:
        """Count one MLE batch or adversarial iteration, queue its values, and stop if a signal arrived."""
        p = self.progress
        if phase == "mle":
            p.mle_step += 1
            p.batch_in_epoch += 1
        else:
            p.adv_step += 1
        self._record(phase, p.mle_step if phase == "mle" else p.adv_step, values)
        if self._bar is not None:
            self._bar.update()
        self._check_stop()

    def epoch_done(self) -> None:
        """After an MLE epoch: evaluate and checkpoint when due."""
        p, cfg = self.progress, self.config.mle
        p.epoch += 1
        p.batch_in_epoch = 0
        self._evaluate_and_checkpoint("mle", p.epoch, cfg.epochs, cfg.eval_every, cfg.checkpoint_every, cfg.patience)

    def iteration_done(self) -> None:
        """After an adversarial iteration: evaluate and checkpoint when due."""
        cfg = self.config.adversarial
        self._evaluate_and_checkpoint(
            "adversarial", self.progress.adv_step, cfg.steps, cfg.eval_every, cfg.checkpoint_every, cfg.patience
        )

    # ------------------------------------------------------------------------------- logs and NaN checks

    def _record(self, phase: str, step: int, values: dict[str, Tensor]) -> None:
        """Queue detached step values; they are checked and logged together (no host sync per step)."""
        device = self.acc.device
        scalars = {k: torch.as_tensor(v, device=device).detach().float().reshape(()) for k, v in values.items()}
        self._pending.append((phase, step, scalars))
        if len(self._pending) >= self.config.run.log_every:
            self.flush()

    def flush(self) -> None:
        """Stop on the first non-finite loss (on any rank); log means to the trackers and the progress bar."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []  # one phase: every phase ends with an evaluation, which flushes
        names = list(rows[-1][2])
        table = torch.stack([torch.stack(list(values.values())) for _, _, values in rows]).cpu()
        losses = list(range(len(names)))  # every logged value: losses, gradient norms, beta
        bad = ~torch.isfinite(table[:, losses])
        anywhere = torch.tensor(float(bad.any()), device=self.acc.device)
        if self.acc.num_processes > 1:
            anywhere = self.acc.reduce(anywhere, reduction="sum")
        if anywhere.item():
            if bad.any():
                row, col = (int(i) for i in bad.nonzero()[0])
                phase, step, _ = rows[row]
                what = f"{names[losses[col]]} = {table[row, losses[col]].item()}"
            else:
                phase, step, _ = rows[0]
                what = "a logged value on another process"
            where = self.last_checkpoint or "none was written yet"
            raise NonFiniteLossError(
                f"non-finite {what} in the {phase} phase at step {step}; training stopped; "
                f"last good checkpoint: {where} (try a lower learning rate)"
            )
        means = dict(zip(names, table.mean(dim=0).tolist(), strict=True))
        self.last_losses, self.last_step = means, dict(zip(names, table[-1].tolist(), strict=True))
        self.acc.log({f"{rows[-1][0]}/{k}": v for k, v in means.items()}, step=self.progress.global_step)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if not k.endswith("norm")}, refresh=False)

    def _check_stop(self) -> None:
        """After a stop signal: write a checkpoint and leave. Ranks agree at log intervals."""
        requested = self.stop.received
        if self.acc.num_processes > 1:
            if self.progress.global_step % self.config.run.log_every:
                return
            flag = torch.tensor(float(requested or 0), device=self.acc.device)
            requested = int(self.acc.reduce(flag, reduction="max").item()) or None
        if requested:
            self.save_checkpoint()
            raise TrainingInterrupted(
                f"stopped by {signal.Signals(requested).name} at step {self.progress.global_step}; checkpoint "
                f"written to {self.last_checkpoint}; continue with --resume",
                requested,
            )

    # -------------------------------------------------------------------------- evaluation, checkpoints

    def _evaluate_and_checkpoint(
        self, phase: str, done: int, total: int, eval_every: int, checkpoint_every: int, patience: int
    ) -> None:
        last, due = done == total, done % eval_every == 0 or done == total
        if due or done % checkpoint_every == 0:
            self.flush()
            self.check_weights()  # nothing is evaluated, checkpointed or exported from non-finite weights
        stopped = False
        if due:
            self.evaluate(phase, done, total)
            if patience:
                stopped = self._keep_patience(phase, patience)
                if phase == "mle" and (stopped or last):
                    self._restore_best_mle(done)
        if stopped:
            if phase == "mle":
                self.progress.mle_stopped = True
            else:
                self.progress.adv_stopped = True
        if done % checkpoint_every == 0 or last or stopped:
            self.save_checkpoint()

    # ---------------------------------------------------------------------------------------- patience

    def _keep_patience(self, phase: str, patience: int) -> bool:
        """After an evaluation of a phase with patience: keep the MLE generator's weights when they are the best
        so far (selection.py), and say (on every rank) whether the phase has run out of patience."""
        stalled = torch.zeros((), device=self.acc.device)
        if self.acc.is_main_process:
            records = self.phase_records(phase)
            if phase == "mle" and selection.best(records, phase) is records[-1]:
                save_best_weights(self.networks["generator"], self.run_dir / BEST_MLE_FILE, records[-1]["step"])
            if selection.stalled(records, phase, patience):
                stalled += 1
                logger.info(
                    "%s phase: %d evaluations without a better model-selection value; it stops at step %d",
                    phase,
                    patience,
                    records[-1]["step"],
                )
        if self.acc.num_processes > 1:
            stalled = self.acc.reduce(stalled, reduction="sum")
        self.acc.wait_for_everyone()
        return bool(stalled.item())

    def _restore_best_mle(self, stopped_at: int) -> None:
        """The end of an MLE phase with patience: its best evaluation's weights become the generator's (on every
        rank), and a copy of that evaluation, marked, becomes the phase's last record."""
        path = self.run_dir / BEST_MLE_FILE
        if self.acc.is_main_process:
            best = selection.best(self.phase_records("mle"), "mle")
            kept = best_weights_step(path)
            if kept != best["step"]:
                raise CheckpointError(
                    f"{path}: holds the weights of MLE epoch {kept}, not of the best evaluation (epoch "
                    f"{best['step']}); the run's evaluations and that file disagree: start a new run.name"
                )
        self.acc.wait_for_everyone()
        load_model(self.networks["generator"], str(path))
        if self.acc.is_main_process:
            record = {**best, "global_step": self.progress.global_step, "restored_best": True, "stopped_at": stopped_at}
            append_jsonl(self.run_dir / METRICS_FILE, record)
            logger.info(
                "MLE: back to epoch %d's weights (val/nll_test %.4f), the best of %d epochs",
                best["step"],
                best["val/nll_test"],
                stopped_at,
            )
        self.acc.wait_for_everyone()

    def phase_records(self, phase: str) -> list[dict[str, Any]]:
        """This run's evaluations of ``phase`` in metrics.jsonl, in order (a restored best's copy left out)."""
        return [
            record
            for _, record in read_metrics(self.run_dir / METRICS_FILE)
            if record["phase"] == phase and not record.get("restored_best")
        ]

    def evaluate(self, phase: str, step: int, total: int) -> None:
        """Write one evaluation (main process) to metrics.jsonl, the trackers and the console."""
        self.flush()
        if self.acc.is_main_process:
            # beta is a state, not a rate: the evaluation logs its value at the last step
            report = {
                "phase": phase,
                "step": step,
                "global_step": self.progress.global_step,
                **{k: v for k, v in self.last_losses.items() if k != "beta"},
                **{k: v for k, v in self.last_step.items() if k == "beta"},
            }
            report.update(self.evaluation_report(phase, step))
            append_jsonl(self.run_dir / METRICS_FILE, report)
            self.acc.log(
                {f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))},
                step=self.progress.global_step,
            )
            (self._bar.write if self._bar is not None else print)(_summary_line(report, total))
        self.acc.wait_for_everyone()

    def save_checkpoint(self) -> None:
        """Write a complete checkpoint of the current step atomically (all ranks take part), never of non-finite
        weights."""
        self.flush()
        self.check_weights()
        root = self.run_dir / CHECKPOINTS
        name = checkpoint_name(self.progress.global_step)
        final, tmp = root / name, root / f".tmp-{name}"
        if final == self.last_checkpoint:
            return
        try:
            if self.acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            self.acc.wait_for_everyone()
            self.acc.save_state(str(tmp))
            self.acc.wait_for_everyone()
            if self.acc.is_main_process:
                publish_checkpoint(tmp, final, {"progress": asdict(self.progress)}, self.config.run.keep_checkpoints)
        except Exception as exc:  # torch, safetensors and the OS each say "disk full" their own way
            shutil.rmtree(tmp, ignore_errors=True)
            raise self._write_error(final, exc) from None
        self.acc.wait_for_everyone()
        self.last_checkpoint = final

    def check_weights(self) -> None:
        """Stop, keeping the last good checkpoint, if a weight of a network went non-finite (a NaN that no logged
        value shows)."""
        for network, module in self.networks.items():
            for name, param in module.named_parameters():
                if not torch.isfinite(param.detach()).all():
                    where = self.last_checkpoint or "none was written yet"
                    raise NonFiniteLossError(
                        f"non-finite weights in the {network} ({name}) at step {self.progress.global_step}; "
                        f"training stopped; nothing exported; last good checkpoint: {where} (try a lower learning "
                        "rate)"
                    )

    def _write_error(self, checkpoint: Path, exc: Exception) -> CheckpointError:
        """One line for a checkpoint that could not be written; nothing of it is left behind."""
        kept = f"last complete checkpoint: {self.last_checkpoint or 'none yet'}"
        free = shutil.disk_usage(checkpoint.parent).free if checkpoint.parent.is_dir() else 0
        need = self._checkpoint_bytes()
        full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc) or free < need
        if full:
            return CheckpointError(
                f"{checkpoint}: no space left on the device for this checkpoint (it needs about {need / 2**20:.0f} "
                f"MB, {free / 2**20:.0f} MB are free); free some and continue with --resume ({kept})"
            )
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:200]
        return CheckpointError(f"{checkpoint}: cannot write the checkpoint ({reason}); {kept}")

    def _checkpoint_bytes(self) -> int:
        """What a checkpoint takes: the last complete one's size, or the weights and Adam's two moments."""
        if self.last_checkpoint is not None and self.last_checkpoint.is_dir():
            return sum(f.stat().st_size for f in self.last_checkpoint.rglob("*") if f.is_file())
        return 3 * self.weight_bytes

    def restore(self, checkpoint: Path) -> None:
        """Load networks, optimisers, RNG states and counters from a complete checkpoint."""
        verify_checkpoint(checkpoint)
        try:
            self.acc.load_state(str(checkpoint))
        except Exception as exc:  # shape mismatches and foreign files surface as many exception types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{checkpoint}: does not fit the model the config asks for ({reason[:200]}); it was trained with "
                "another architecture, vocabulary or set of modules: start a new run.name"
            ) from None
        self.progress = Progress(**read_trainer_state(checkpoint)["progress"])
        self.last_checkpoint = checkpoint
        if self.acc.is_main_process:
            _drop_metrics_after(self.run_dir / METRICS_FILE, self.progress.global_step)


def save_best_weights(generator: nn.Module, path: Path, step: int) -> None:
    """The generator's weights as of evaluation ``step``, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_model(generator, str(tmp), metadata={"step": str(step)})
    tmp.replace(path)


def best_weights_step(path: Path) -> int | None:
    """The evaluation step whose weights ``path`` holds; None where there is no such file."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        return int(handle.metadata()["step"])


def last_reports(path: Path) -> dict[str, Any]:
    """The last evaluation of each phase (and the oracle reference line) from metrics.jsonl."""
    last: dict[str, Any] = {}
    for _, record in read_metrics(path):
        last[record["phase"]] = record
    return last


def read_metrics(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The (line, record) pairs of a metrics.jsonl. A torn last line, as a crash or a full disk during an append
    leaves it, is dropped with a one-line warning; a line that is not JSON anywhere else is an error naming it."""
    if not path.exists():
        return []
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a file (a run keeps its evaluations there); move it away")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if index != last:
                raise CheckpointError(
                    f"{path}: line {index + 1} is not a JSON record; repair or delete that line"
                ) from None
            logger.warning("%s: its last line is torn (%d characters, no whole record); it is dropped", path, len(line))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("phase"), str):
            raise CheckpointError(
                f"{path}: line {index + 1} is JSON but not an evaluation record (an object with a phase); repair or "
                "delete that line"
            )
        records.append((line, record))
    return records


def _drop_metrics_after(path: Path, global_step: int) -> None:
    """On resume, forget evaluations newer than the checkpoint (they will be redone) and a torn last line."""
    if not path.exists():
        return
    kept = [line for line, record in read_metrics(path) if record.get("global_step", 0) <= global_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


_SUMMARY_KEYS = (
    "beta",
    "g_loss",
    "d_loss",
    "nll_oracle",
    "nll_gen",
    "nll_test",
    "bleu-2",
    "bleu-3",
    "bleu-4",
    "bleu-5",
    "self-bleu-4",
)


def _summary_line(report: dict[str, Any], total: int) -> str:
    parts = [f"[{report['phase']} {report['step']}/{total}]"]
    parts += [f"{k}={report[k]:.4g}" for k in _SUMMARY_KEYS if isinstance(report.get(k), (int, float))]
    return " ".join(parts)


def _tracked(tree: dict[str, Any]) -> dict[str, Any]:
    """A nested config as trackers take it: dotted keys, lists and nulls as strings."""
    return {
        key: str(value) if isinstance(value, list) or value is None else value for key, value in dotted(tree).items()
    }
