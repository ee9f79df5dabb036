"""The learning algorithm: MLE pretraining, then adversarial training, on one Accelerator (one CPU, one GPU or
many GPUs/nodes). The adversarial iteration itself is written in adversarial.py; run bookkeeping (logs,
evaluations, checkpoints, signals, resume) is in bookkeeping.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from relgan import fast
from relgan.adversarial import (
    DiscriminatorStepDraws,
    FakeBatch,
    adversarial_iteration,
    discriminator_loss,
    iteration_values,
)
from relgan.algorithms import build_algorithm
from relgan.bookkeeping import METRICS_FILE, Progress, RunBook, last_reports
from relgan.checkpoint import export_generator, read_trainer_state
from relgan.config import Config, schedule_horizon
from relgan.data import Corpus
from relgan.draws import RunDraws
from relgan.evaluation import CorpusEvaluation
from relgan.fast.cuda_graphs import StepGraph
from relgan.gumbel import LearnedInverseTemperature, inverse_temperature
from relgan.io_utils import atomic_write_text
from relgan.models import Discriminator, build_generator, count_parameters
from relgan.run_directory import RunLock
from relgan.runtime import evaluating, frozen, registered_only

logger = logging.getLogger("relgan")


class Trainer:
    """The networks, optimisers and data of one run, and the learning algorithm (:meth:`fit`)."""

    def __init__(self, config: Config, corpus: Corpus, run_dir: Path, accelerator: Accelerator) -> None:
        self.config, self.corpus, self.run_dir, self.acc = config, corpus, run_dir, accelerator
        # labelled data trains class-conditional models unless data.condition_on_labels says otherwise
        num_classes = corpus.num_classes if config.data.condition_on_labels else 0
        generator = build_generator(
            config.generator, corpus.vocab_size, corpus.seq_len, corpus.start_id, num_classes=num_classes
        )
        discriminator = Discriminator(config.discriminator, corpus.vocab_size, corpus.seq_len, num_classes)
        self.parameter_counts = {
            "generator_parameters": count_parameters(generator),
            "discriminator_parameters": count_parameters(discriminator),
        }
        self.backend = fast.apply(
            generator,
            discriminator,
            setting=config.run.backend,
            device=accelerator.device,
            log=accelerator.is_main_process,
        )
        adv = config.adversarial
        beta_module = LearnedInverseTemperature() if config.gumbel.schedule == "learned" else None
        self.g_params = list(generator.parameters()) + (list(beta_module.parameters()) if beta_module else [])
        # the class ids of the training sentences, where the models condition on them
        labels = corpus.train_labels if num_classes else None
        loader = DataLoader(
            TensorDataset(corpus.train_ids, *([] if labels is None else [labels])),
            batch_size=config.mle.batch_size,
            shuffle=config.mle.shuffle,
            drop_last=True,
        )
        self.algorithm = build_algorithm(config)
        learned = self.algorithm.learned_parts(corpus.vocab_size, corpus.seq_len)
        g_groups: list[dict[str, Any]] = [{"params": self.g_params}]
        if learned is not None:  # the estimator's own parameters: their own rate, outside the generator's clipping
            g_groups.append({"params": list(learned.module.parameters()), "lr": learned.lr})
        # captured only where the generator's and the algorithm's steps were verified captured
        self.use_graphs = (
            config.run.cuda_graphs
            and accelerator.device.type == "cuda"
            and accelerator.num_processes == 1
            and config.run.mixed_precision != "fp16"
            and generator.cuda_graphs
            and self.algorithm.cuda_graphs
        )
        adam: dict[str, Any] = {"capturable": True} if self.use_graphs else {}
        (
            self.generator,
            self.discriminator,
            self.mle_optimizer,
            self.g_optimizer,
            self.d_optimizer,
            self.mle_loader,
        ) = accelerator.prepare(
            generator,
            discriminator,
            torch.optim.Adam(generator.parameters(), lr=config.mle.lr, **adam),
            torch.optim.Adam(g_groups, lr=adv.g_lr, **adam),
            torch.optim.Adam(discriminator.parameters(), lr=adv.d_lr, **adam),
            loader,
        )
        self.beta_module = accelerator.prepare(beta_module) if beta_module is not None else None
        self.gen = accelerator.unwrap_model(self.generator)
        self.disc = accelerator.unwrap_model(self.discriminator)
        # a single run leaves the Gumbel noise and dropout masks to the models (and their fast paths)
        self.draws = RunDraws(
            corpus.train_ids.to(accelerator.device),
            labels.to(accelerator.device) if labels is not None else None,
            self.disc,
            corpus.vocab_size,
            materialise=False,
        )
        self.horizon = schedule_horizon(config)
        self.lock: RunLock | None = None  # of the run directory, while this trainer writes it (assembly.setup)
        if corpus.oracle is not None:
            corpus.oracle.to(accelerator.device)
        self.evaluation = CorpusEvaluation(
            corpus, config.eval.protocol, config.eval.bleu_orders, config.eval.chosen_metrics()
        )
        networks = {"generator": self.gen, "discriminator": self.disc}
        if self.beta_module is not None:
            networks["learned beta"] = self.beta_module
        if learned is not None:
            self.algorithm.learned = accelerator.prepare(learned.module)
            networks["control variate"] = learned.module
        self.book = RunBook(config, run_dir, accelerator, self.evaluation_report, networks)
        # On one GPU the steps are captured once and replayed as CUDA graphs (fast/cuda_graphs.py). A replay
        # repeats the captured kernels: tensors read inside a step (parameters, optimiser state, beta passed
        # in as a tensor) keep their storage and may change value, but a Python value read inside a step is
        # frozen at its capture; keep those outside the steps (the loop below passes beta in).
        self.mle_step = StepGraph(self._mle_step, self.use_graphs, "MLE step")
        self.adversarial_iteration = StepGraph(self._adversarial_iteration, self.use_graphs, "adversarial iteration")

    @property
    def progress(self):
        return self.book.progress

    def restore(self, checkpoint: Path) -> None:
        """Continue from ``checkpoint`` under this run's learning rates: an optimiser's saved state carries the rates
        it was saved with, and the adversarial phase's may differ from them until that phase begins (a GAN branched
        from a finished MLE run; assembly's resume check refuses any other change)."""
        optimizers = (self.mle_optimizer, self.g_optimizer, self.d_optimizer)
        rates = [[group["lr"] for group in optimizer.param_groups] for optimizer in optimizers]
        networks = [self.generator, self.discriminator]
        if self._holds_only(checkpoint, networks):
            # A finished MLE run continued by an algorithm with modules of its own (a control variate, a learned
            # beta): MLE never touches them nor the adversarial optimisers, so they keep the values this run was
            # seeded with, exactly as in a run that trained its MLE phase itself.
            with registered_only(self.acc, networks, [self.mle_optimizer]):
                self.book.restore(checkpoint)
        else:
            self.book.restore(checkpoint)
        for optimizer, wanted in zip(optimizers, rates, strict=True):
            for group, lr in zip(optimizer.param_groups, wanted, strict=True):
                group["lr"] = lr

    def _holds_only(self, checkpoint: Path, networks: list[torch.nn.Module]) -> bool:
        """Whether ``checkpoint``, from before the adversarial phase, holds these first networks only while this run
        adds modules (its own checkpoints always hold them)."""
        saved = len(list(checkpoint.glob("model*.safetensors")))
        before_adversarial = not read_trainer_state(checkpoint)["progress"]["adv_step"]
        return before_adversarial and saved == len(networks) < len(self.book.networks)

    @property
    def mle_batches_per_epoch(self) -> int:
        return len(self.mle_loader)

    def fit(self, *, keep_process_group: bool = False) -> dict[str, Any]:
        """Train what is left of the run, then :meth:`finish` it; the run directory's lock is released however
        the run ends."""
        try:
            learn(self, self.book)
            return self.finish(keep_process_group=keep_process_group)
        finally:
            self.release_lock()

    def release_lock(self) -> None:
        """Let another process write this run directory."""
        if self.lock is not None:
            self.lock.release()

    def finish(self, *, keep_process_group: bool = False) -> dict[str, Any]:
        """After training: export the generator and finish the trackers; the process group too unless
        ``keep_process_group`` (another run follows in this process: the replicas of ``run.seeds``). Returns
        the last evaluation of each phase."""
        self.book.check_weights()
        if self.acc.is_main_process:
            export_generator(self.gen, self.run_dir)
        self.acc.wait_for_everyone()
        if keep_process_group:
            for tracker in self.acc.trackers:
                tracker.finish()
        else:
            self.acc.end_training()
        return last_reports(self.run_dir / METRICS_FILE)

    # ------------------------------------------------------------------------------------------ steps

    def _mle_step(self, batch: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher forcing from the start token (given the sentences' classes [B] for a conditional generator);
        mean per-token NLL over all positions (padding included)."""
        loss = self.generator(batch, mode="nll", labels=labels).mean()
        self.mle_optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        norm = self.acc.clip_grad_norm_(self.generator.parameters(), self.config.mle.grad_clip)
        self.mle_optimizer.step()
        return loss.detach(), norm

    def _adversarial_iteration(self, scheduled_beta: Tensor) -> tuple[Tensor, ...]:
        return adversarial_iteration(self, self.algorithm, self.draws, self.config.adversarial, scheduled_beta)

    # the steps of adversarial.IterationSteps, on this run's modules

    def generator_update(self, step: Any, scheduled_beta: Tensor) -> tuple[Tensor, Tensor]:
        # D is a fixed function here: no DDP, no weight gradients; its own step clears nothing of G's.
        with frozen(self.disc), self.acc.autocast():
            loss, g_loss = self.algorithm.generator_loss(self.generator, self.disc, self._beta(scheduled_beta), step)
        self.g_optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        norm = self.acc.clip_grad_norm_(self.g_params, self.config.adversarial.grad_clip)
        self.g_optimizer.step()
        return g_loss.detach(), norm

    def beta(self, scheduled_beta: Tensor) -> Tensor:
        return self._beta(scheduled_beta).detach()

    def _beta(self, scheduled: Tensor) -> Tensor:
        return self.beta_module() if self.beta_module is not None else scheduled

    def fake_batches(self, beta: Tensor, samples: Any, count: int) -> list[FakeBatch]:
        with torch.no_grad(), self.acc.autocast():
            return self.algorithm.fake_samples(self.gen, beta, samples, count, self.config.adversarial.batch_size)

    def discriminator_update(
        self, fake: FakeBatch, step: DiscriminatorStepDraws, learn: bool = True
    ) -> tuple[Tensor, Tensor]:
        cfg = self.config.adversarial
        if not learn:  # the module itself: no DDP reduction waits for a backward that never comes
            with self.acc.autocast():
                d_loss = discriminator_loss(self.disc, fake, step, cfg)
            return d_loss.detach(), torch.zeros((), device=d_loss.device)
        with self.acc.autocast():
            d_loss = discriminator_loss(self.discriminator, fake, step, cfg, penalised=self.disc)
        self.d_optimizer.zero_grad(set_to_none=True)
        self.acc.backward(d_loss)
        norm = self.acc.clip_grad_norm_(self.discriminator.parameters(), cfg.grad_clip)
        self.d_optimizer.step()
        return d_loss.detach(), norm

    # ------------------------------------------------------------------------------------- evaluation

    def evaluation_report(self, phase: str, step: int) -> dict[str, Any]:
        """Samples (written to samples/) and metrics of the current generator; main process only."""
        cfg = self.config.eval
        with torch.no_grad(), self.acc.autocast(), evaluating(self.gen):
            metrics_report, texts = self.evaluation(
                self.gen,
                cfg.chosen_metrics(),
                num_samples=cfg.num_samples,
                batch_size=cfg.batch_size,
                seed=self.config.run.seed,
                nll_batch_size=self.config.mle.batch_size,
            )
            if self.evaluation.selects:
                metrics_report.update(
                    self.evaluation.selection_report(
                        self.gen,
                        num_samples=cfg.num_samples,
                        batch_size=cfg.batch_size,
                        seed=self.config.run.seed,
                        nll_batch_size=self.config.mle.batch_size,
                    )
                )
        report = {**metrics_report, "samples": texts[: cfg.print_samples]}
        atomic_write_text(self.run_dir / "samples" / f"{phase}-{step:06d}.txt", "\n".join(texts) + "\n")
        return report


class Steps(Protocol):
    """What :func:`learn` needs of a run: a :class:`Trainer`, or the replicas of ``run.seeds`` in lockstep
    (:class:`relgan.batched.BatchedReplicas`)."""

    @property
    def config(self) -> Config: ...

    @property
    def acc(self) -> Accelerator: ...

    @property
    def horizon(self) -> int:
        """N of the beta schedule."""
        ...

    @property
    def mle_loader(self) -> Any:
        """The MLE batches (one loader, or one per replica)."""
        ...

    @property
    def mle_batches_per_epoch(self) -> int: ...

    @property
    def mle_step(self) -> StepGraph:
        """(batch tensors) -> (loss, gradient norm)."""
        ...

    @property
    def adversarial_iteration(self) -> StepGraph:
        """(scheduled beta) -> the iteration's values (adversarial.iteration_values)."""
        ...


class Book(Protocol):
    """What :func:`learn` needs of the bookkeeping: a :class:`relgan.bookkeeping.RunBook`, or the replicas'
    :class:`relgan.replica_books.ReplicaBooks`."""

    @property
    def progress(self) -> Progress: ...

    def running(self) -> contextlib.AbstractContextManager[None]: ...

    def phase(self, name: str, total: int, done: int, unit: str) -> contextlib.AbstractContextManager[None]: ...

    def epoch_batches(self, loader: Any) -> Iterator[Any]: ...

    def seed(self, phase: str, step: int) -> None: ...

    def step_done(self, phase: str, **values: Tensor) -> None: ...

    def epoch_done(self) -> None: ...

    def iteration_done(self) -> None: ...


def learn(steps: Steps, book: Book) -> None:
    """The learning algorithm: MLE epochs, then adversarial iterations, until the config's budget is done or a
    phase with patience stops (selection.py).

    ``steps`` gives the config, the MLE loader(s) and their batches per epoch, the two steps and the schedule's
    horizon; ``book`` counts, seeds, logs, evaluates, checkpoints and stops (bookkeeping.py).
    """
    config, p = steps.config, book.progress
    with book.running():
        if not p.mle_over(config.mle.epochs):
            with book.phase("MLE", config.mle.epochs * steps.mle_batches_per_epoch, p.mle_step, "batch"):
                while not p.mle_over(config.mle.epochs):
                    for batch in book.epoch_batches(steps.mle_loader):
                        loss, norm = steps.mle_step(*batch)
                        book.step_done("mle", g_loss=loss, g_grad_norm=norm)
                    book.epoch_done()
            steps.mle_step.release()
        gumbel = config.gumbel
        if not p.adversarial_over(config.adversarial.steps):
            with book.phase("adversarial", config.adversarial.steps, p.adv_step, "it"):
                while not p.adversarial_over(config.adversarial.steps):
                    book.seed("adversarial", p.adv_step)
                    scheduled = inverse_temperature(gumbel.schedule, p.adv_step, gumbel.beta_max, steps.horizon)
                    values = steps.adversarial_iteration(torch.full((), scheduled, device=steps.acc.device))
                    book.step_done("adversarial", **iteration_values(values))
                    book.iteration_done()
