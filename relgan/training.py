"""MLE pretraining and adversarial training on one Accelerator (one CPU, one GPU or many GPUs/nodes).

Adversarial iteration k (0-based) trains with beta(k) of the schedule: g_steps generator updates, then
d_steps discriminator updates, each on a fresh random real batch and fresh generator samples. (The
official code trains iteration k with beta(k-1) and iteration 0 with 1; the difference is one step.)
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from relgan.checkpoint import (
    CHECKPOINTS,
    checkpoint_name,
    export_generator,
    latest_checkpoint,
    load_run_config,
    publish_checkpoint,
    read_trainer_state,
    verify_checkpoint,
    write_model_card,
)
from relgan.config import Config, save_config, schedule_horizon
from relgan.cuda_graphs import StepGraph
from relgan.data import Corpus, load_corpus, save_corpus_artifacts
from relgan.errors import CheckpointError, DataError, NonFiniteLossError, TrainingInterrupted
from relgan.evaluation import TextEvaluator, generator_report
from relgan.gumbel import LearnedInverseTemperature, inverse_temperature
from relgan.io_utils import append_jsonl, atomic_write_text
from relgan.losses import gan_losses, gradient_penalty
from relgan.models import Discriminator, Generator, count_parameters
from relgan.runtime import StopSignals, build_accelerator, configure_threads, frozen, seed_step

logger = logging.getLogger("relgan")

METRICS_FILE = "metrics.jsonl"
# keys a resumed run must share with the run it continues
COMPATIBLE_SECTIONS = ("generator", "discriminator")
COMPATIBLE_DATA_KEYS = ("source", "tokenization", "min_frequency", "max_vocab_size", "seq_len", "oracle")


@dataclass
class Progress:
    """Counters saved with every checkpoint."""

    epoch: int = 0  # completed MLE epochs
    batch_in_epoch: int = 0  # MLE batches done in the current epoch
    mle_step: int = 0  # MLE batches done
    adv_step: int = 0  # adversarial iterations done

    @property
    def global_step(self) -> int:
        return self.mle_step + self.adv_step


class Trainer:
    """Owns the prepared networks, optimisers and data of one run and trains them."""

    def __init__(self, config: Config, corpus: Corpus, run_dir: Path, accelerator: Accelerator) -> None:
        self.config, self.corpus, self.run_dir, self.acc = config, corpus, run_dir, accelerator
        generator = Generator(config.generator, corpus.vocab_size, corpus.seq_len, corpus.start_id)
        discriminator = Discriminator(config.discriminator, corpus.vocab_size, corpus.seq_len)
        self.parameter_counts = {
            "generator_parameters": count_parameters(generator),
            "discriminator_parameters": count_parameters(discriminator),
        }
        adv = config.adversarial
        beta_module = LearnedInverseTemperature() if config.gumbel.schedule == "learned" else None
        g_params = list(generator.parameters()) + (list(beta_module.parameters()) if beta_module else [])
        loader = DataLoader(TensorDataset(corpus.train_ids), batch_size=config.mle.batch_size,
                            shuffle=config.mle.shuffle, drop_last=True)
        self.use_graphs = (config.run.cuda_graphs and accelerator.device.type == "cuda"
                           and accelerator.num_processes == 1 and config.run.mixed_precision != "fp16")
        adam = {"capturable": True} if self.use_graphs else {}
        (self.generator, self.discriminator, self.mle_optimizer, self.g_optimizer, self.d_optimizer,
         self.mle_loader) = accelerator.prepare(
            generator, discriminator,
            torch.optim.Adam(generator.parameters(), lr=config.mle.lr, **adam),
            torch.optim.Adam(g_params, lr=adv.g_lr, **adam),
            torch.optim.Adam(discriminator.parameters(), lr=adv.d_lr, **adam),
            loader,
        )
        self.mle_graph = StepGraph(self._mle_step, self.use_graphs, "MLE step")
        self.adversarial_graph = StepGraph(self._adversarial_iteration, self.use_graphs, "adversarial iteration")
        self.beta_module = accelerator.prepare(beta_module) if beta_module is not None else None
        self.g_params = g_params
        self.gen = accelerator.unwrap_model(self.generator)
        self.disc = accelerator.unwrap_model(self.discriminator)
        self.train_ids = corpus.train_ids.to(accelerator.device)
        self.horizon = schedule_horizon(config)
        self.progress = Progress()
        self.stop = StopSignals()
        self.last_checkpoint: Path | None = None
        self.last_losses: dict[str, float] = {}
        self.current_beta: Tensor | float = 1.0
        self._pending: list[tuple[str, int, dict[str, Tensor]]] = []
        self._bar: tqdm | None = None
        if corpus.oracle is not None:
            corpus.oracle.to(accelerator.device)
        self.text_evaluator = None
        if {"bleu", "self_bleu", "diversity", "fed"} & set(config.eval.metrics):
            self.text_evaluator = TextEvaluator.for_corpus(corpus, config.eval.protocol, config.eval.bleu_orders)

    # ------------------------------------------------------------------------------------------ public

    def restore(self, checkpoint: Path) -> None:
        """Load networks, optimisers, RNG states and counters from a complete checkpoint."""
        verify_checkpoint(checkpoint)
        try:
            self.acc.load_state(str(checkpoint))
        except Exception as exc:  # shape mismatches and foreign files surface as many exception types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{checkpoint}: does not fit the model the config asks for ({reason[:200]}); "
                "it was trained with another architecture or vocabulary"
            ) from None
        self.progress = Progress(**read_trainer_state(checkpoint)["progress"])
        self.last_checkpoint = checkpoint
        if self.acc.is_main_process:
            _drop_metrics_after(self.run_dir / METRICS_FILE, self.progress.global_step)

    def fit(self) -> dict[str, Any]:
        """Run what is left of MLE and adversarial training, export the generator, return the last reports."""
        self.acc.init_trackers(self.config.run.name or "relgan", config=_flat(self.config.to_dict()))
        with self.stop.installed():
            if self.progress.epoch < self.config.mle.epochs:
                self._mle_phase()
            if self.progress.adv_step < self.config.adversarial.steps:
                self._adversarial_phase()
        self._flush()
        if self.acc.is_main_process:
            export_generator(self.gen, self.run_dir)
        self.acc.wait_for_everyone()
        self.acc.end_training()
        return _last_reports(self.run_dir / METRICS_FILE)

    # ------------------------------------------------------------------------------------------- MLE

    def _mle_phase(self) -> None:
        cfg, p = self.config.mle, self.progress
        per_epoch = len(self.mle_loader)
        self._bar = tqdm(total=cfg.epochs * per_epoch, initial=p.mle_step, desc="MLE", unit="batch",
                         disable=not self.acc.is_main_process, dynamic_ncols=True)
        while p.epoch < cfg.epochs:
            self.mle_loader.set_epoch(p.epoch)
            loader = self.acc.skip_first_batches(self.mle_loader, p.batch_in_epoch) if p.batch_in_epoch \
                else self.mle_loader
            self._bar.set_description(f"MLE epoch {p.epoch + 1}/{cfg.epochs}")
            for (batch,) in loader:
                seed_step(self.config.run.seed, self.acc.process_index, "mle", p.mle_step)
                loss, norm = self.mle_graph(batch)
                p.mle_step += 1
                p.batch_in_epoch += 1
                self._record("mle", p.mle_step, g_loss=loss, g_grad_norm=norm)
                self._bar.update()
                self._check_stop()
            p.epoch += 1
            p.batch_in_epoch = 0
            self._evaluate_and_checkpoint("mle", p.epoch, cfg.epochs, cfg.eval_every, cfg.checkpoint_every)
        self._bar.close()
        self.mle_graph.release()

    def _mle_step(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing from the start token; mean per-token NLL over all positions (padding included)."""
        loss = self.generator(batch, mode="nll").mean()
        self.mle_optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        norm = self.acc.clip_grad_norm_(self.generator.parameters(), self.config.mle.grad_clip)
        self.mle_optimizer.step()
        return loss.detach(), norm

    # ----------------------------------------------------------------------------------- adversarial

    def _adversarial_phase(self) -> None:
        cfg, p = self.config.adversarial, self.progress
        self._bar = tqdm(total=cfg.steps, initial=p.adv_step, desc="adversarial", unit="it",
                         disable=not self.acc.is_main_process, dynamic_ncols=True)
        gumbel = self.config.gumbel
        while p.adv_step < cfg.steps:
            seed_step(self.config.run.seed, self.acc.process_index, "adversarial", p.adv_step)
            scheduled = inverse_temperature(gumbel.schedule, p.adv_step, gumbel.beta_max, self.horizon)
            g_loss, d_loss, g_norm, d_norm, beta = self.adversarial_graph(
                torch.full((), scheduled, device=self.acc.device))
            self.current_beta = beta
            p.adv_step += 1
            self._record("adversarial", p.adv_step, g_loss=g_loss, d_loss=d_loss, g_grad_norm=g_norm,
                         d_grad_norm=d_norm, beta=beta)
            self._bar.update()
            self._check_stop()
            self._evaluate_and_checkpoint("adversarial", p.adv_step, cfg.steps, cfg.eval_every, cfg.checkpoint_every)
        self._bar.close()

    def _adversarial_iteration(self, scheduled_beta: Tensor) -> tuple[Tensor, ...]:
        """g_steps generator updates, then d_steps discriminator updates; beta is a 0-dim tensor.

        Returns the last (g_loss, d_loss, g_grad_norm, d_grad_norm) and the beta used.
        """
        cfg = self.config.adversarial
        beta = self.beta_module() if self.beta_module is not None else scheduled_beta
        for _ in range(cfg.g_steps):
            g_loss, g_norm = self._generator_step(beta)
        fixed = beta.detach()
        for fake in self._fake_batches(fixed, cfg.d_steps):
            d_loss, d_norm = self._discriminator_step(fake)
        return g_loss, d_loss, g_norm, d_norm, fixed

    def _real_batch(self) -> Tensor:
        """A random one of the sequential batches (the official ``random_batch``): ids [B, T] on the device."""
        size = self.config.adversarial.batch_size
        which = torch.randint(len(self.train_ids) // size, (1,), device=self.train_ids.device)
        return self.train_ids[which * size + torch.arange(size, device=self.train_ids.device)]

    def _generator_step(self, beta: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.config.adversarial
        real = self._real_batch()
        _, fake = self.generator(mode="sample", batch_size=cfg.batch_size, beta=beta,
                                 hard=self.config.gumbel.straight_through)
        # D is a fixed function here: no DDP, no weight gradients; its own step clears nothing of G's.
        with frozen(self.disc), self.acc.autocast():
            with torch.no_grad():
                (d_real,) = self.disc(real)
            (d_fake,) = self.disc(fake)
            _, g_loss = gan_losses(cfg.loss, d_real, d_fake)
        self.g_optimizer.zero_grad(set_to_none=True)
        self.acc.backward(g_loss)
        norm = self.acc.clip_grad_norm_(self.g_params, cfg.grad_clip)
        self.g_optimizer.step()
        return g_loss.detach(), norm

    def _fake_batches(self, beta: Tensor, count: int) -> tuple[Tensor, ...]:
        """``count`` fresh batches of relaxed samples [B, T, V] for the discriminator steps.

        The generator does not change during the discriminator steps, so their samples are drawn in one
        no-grad pass of count * B sentences: the same distribution, far better matrix shapes.
        """
        size = self.config.adversarial.batch_size
        with torch.no_grad(), self.acc.autocast():
            _, fake = self.gen.sample(size * count, beta, hard=self.config.gumbel.straight_through)
        return fake.split(size)

    def _discriminator_step(self, fake: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.config.adversarial
        real = self._real_batch()
        d_real, d_fake = self.discriminator(real, fake)
        d_loss, _ = gan_losses(cfg.loss, d_real, d_fake)
        if cfg.loss == "wgan-gp":
            with self.acc.autocast():
                d_loss = d_loss + gradient_penalty(self.disc, real, fake, cfg.gp_weight)
        self.d_optimizer.zero_grad(set_to_none=True)
        self.acc.backward(d_loss)
        norm = self.acc.clip_grad_norm_(self.discriminator.parameters(), cfg.grad_clip)
        self.d_optimizer.step()
        return d_loss.detach(), norm

    # --------------------------------------------------------------------------- logging and checks

    def _record(self, phase: str, step: int, **values: Tensor) -> None:
        """Queue detached step values; they are checked and logged together (no host sync per step)."""
        device = self.acc.device
        scalars = {k: torch.as_tensor(v, device=device).detach().float().reshape(()) for k, v in values.items()}
        self._pending.append((phase, step, scalars))
        if len(self._pending) >= self.config.run.log_every:
            self._flush()

    def _flush(self) -> None:
        """Stop on the first non-finite loss (on any rank); log means to the trackers and the progress bar."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        rows = pending  # one phase: every phase ends with an evaluation, which flushes
        names = list(rows[-1][2])
        table = torch.stack([torch.stack(list(values.values())) for _, _, values in rows]).cpu()
        losses = [i for i, name in enumerate(names) if name.endswith("loss")]
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
                what = "a loss on another process"
            where = self.last_checkpoint or "none was written yet"
            raise NonFiniteLossError(
                f"non-finite {what} in the {phase} phase at step {step}; training stopped; "
                f"last good checkpoint: {where} (try a lower learning rate)"
            )
        means = dict(zip(names, table.mean(dim=0).tolist()))
        self.last_losses = means
        phase, step, _ = rows[-1]
        self.acc.log({f"{phase}/{k}": v for k, v in means.items()}, step=self.progress.global_step)
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
            name = signal.Signals(requested).name
            raise TrainingInterrupted(
                f"stopped by {name} at step {self.progress.global_step}; checkpoint written to "
                f"{self.last_checkpoint}; continue with --resume", requested
            )

    # -------------------------------------------------------------------------- evaluation, checkpoints

    def _evaluate_and_checkpoint(self, phase: str, done: int, total: int, eval_every: int,
                                 checkpoint_every: int) -> None:
        """After epoch or iteration ``done`` of ``total``: evaluate and checkpoint when due, and at the end."""
        last = done == total
        if done % eval_every == 0 or last:
            self._evaluate(phase, done, total)
        if done % checkpoint_every == 0 or last:
            self.save_checkpoint()

    def _evaluate(self, phase: str, step: int, total: int) -> None:
        self._flush()
        if self.acc.is_main_process:
            report = self.evaluation_report(phase, step)
            append_jsonl(self.run_dir / METRICS_FILE, report)
            self.acc.log({f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))},
                         step=self.progress.global_step)
            line = _summary_line(report, total)
            (self._bar.write if self._bar is not None else print)(line)
        self.acc.wait_for_everyone()

    def evaluation_report(self, phase: str, step: int) -> dict[str, Any]:
        """Samples (written to samples/) and metrics of the current generator; main process only."""
        cfg, corpus = self.config.eval, self.corpus
        report: dict[str, Any] = {"phase": phase, "step": step, "global_step": self.progress.global_step}
        report.update({k: v for k, v in self.last_losses.items() if k != "beta"})
        if phase == "adversarial":
            report["beta"] = float(self.current_beta)
        with torch.no_grad(), self.acc.autocast():
            metrics_report, texts = generator_report(
                self.gen, corpus, cfg.metrics, num_samples=cfg.num_samples, batch_size=cfg.batch_size,
                seed=self.config.run.seed, nll_batch_size=self.config.mle.batch_size,
                text_evaluator=self.text_evaluator,
            )
        report.update(metrics_report)
        report["samples"] = texts[: cfg.print_samples]
        atomic_write_text(self.run_dir / "samples" / f"{phase}-{step:06d}.txt", "\n".join(texts) + "\n")
        return report

    def save_checkpoint(self) -> None:
        """Write a complete checkpoint of the current step atomically (all ranks take part)."""
        self._flush()
        root = self.run_dir / CHECKPOINTS
        name = checkpoint_name(self.progress.global_step)
        final, tmp = root / name, root / f".tmp-{name}"
        if final == self.last_checkpoint:
            return
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            publish_checkpoint(tmp, final, {"progress": asdict(self.progress)}, self.config.run.keep_checkpoints)
        self.acc.wait_for_everyone()
        self.last_checkpoint = final


# ------------------------------------------------------------------------------------------ the run


def run_dir_of(config: Config) -> Path:
    return Path(config.run.output_dir) / (config.run.name or "relgan")


def setup(config: Config, *, resume: str | None = None, overwrite: bool = False,
          write: bool = True) -> Trainer:
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
    with accelerator.main_process_first():
        corpus = load_corpus(config.data, saved=run_dir if resume is not None else None)
    _check_corpus_size(corpus, config, accelerator.num_processes)
    trainer = Trainer(config, corpus, run_dir, accelerator)
    if write and accelerator.is_main_process:
        save_config(config, run_dir / "config.yaml")
        save_corpus_artifacts(corpus, run_dir)
        extra = {"eos_id": corpus.eos_id, "seed": config.run.seed, "sample_batch_size": config.eval.batch_size}
        write_model_card(run_dir, trainer.gen, extra)
        if resume is None and corpus.oracle is not None:
            append_jsonl(run_dir / METRICS_FILE, {"phase": "reference", "step": 0, "global_step": 0,
                                                  "nll_oracle": corpus.oracle.nll(corpus.test_ids)})
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
    need = max(config.mle.batch_size * processes if config.mle.epochs else 0,
               config.adversarial.batch_size if config.adversarial.steps else 0)
    if len(corpus.train_ids) < need:
        source = config.data.train_file if config.data.source == "files" else f"data.{config.data.source}"
        raise DataError(
            f"{source}: {len(corpus.train_ids)} training sentences, fewer than one batch ({need}); "
            "use more data or a smaller mle.batch_size / adversarial.batch_size"
        )


def _drop_metrics_after(path: Path, global_step: int) -> None:
    """On resume, forget evaluations newer than the checkpoint: they will be redone."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("global_step", 0) <= global_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _last_reports(path: Path) -> dict[str, Any]:
    """The last evaluation of each phase (and the oracle reference line) from metrics.jsonl."""
    last: dict[str, Any] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                last[record["phase"]] = record
    return last


_SUMMARY_KEYS = ("beta", "g_loss", "d_loss", "nll_oracle", "nll_gen", "nll_test", "bleu-2", "bleu-3", "bleu-4",
                 "bleu-5", "self-bleu-4")


def _summary_line(report: dict[str, Any], total: int) -> str:
    parts = [f"[{report['phase']} {report['step']}/{total}]"]
    parts += [f"{k}={report[k]:.4g}" for k in _SUMMARY_KEYS if isinstance(report.get(k), (int, float))]
    return " ".join(parts)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested config for trackers (lists become strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value) if isinstance(value, list) or value is None else value
    return flat
