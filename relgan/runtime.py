"""Process-level plumbing: the Accelerator, threads, deterministic per-step seeds and stop signals."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import signal
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import AutocastKwargs, DataLoaderConfiguration, ProjectConfiguration

from relgan.config import RunConfig


def build_accelerator(run: RunConfig, run_dir: Path) -> Accelerator:
    """One Accelerator for the whole run: device(s), DDP, mixed precision, checkpoint state, trackers."""
    tracker = run.tracker
    if tracker == "auto":
        tracker = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    graphs = run.cuda_graphs and torch.cuda.is_available() and not run.cpu
    return Accelerator(
        cpu=run.cpu,
        mixed_precision=run.mixed_precision,
        # CUDA graph capture needs autocast without its weight-cast cache
        kwargs_handlers=[AutocastKwargs(cache_enabled=False)] if graphs else None,
        log_with=None if tracker == "none" else tracker,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def configure_threads(run: RunConfig) -> None:
    if run.num_threads is not None:
        torch.set_num_threads(run.num_threads)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed determined by ``parts`` (stable across processes, machines and Python versions)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def seed_step(seed: int, rank: int, phase: str, step: int) -> None:
    """Reseed all torch RNGs for one training step.

    Every step's randomness (data choice, Gumbel noise, dropout) then depends only on (seed, rank, phase,
    step): a resumed run continues exactly as an uninterrupted one, and ranks draw different data.
    """
    torch.manual_seed(derive_seed(seed, rank, phase, step))


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a flag the training loop polls; a second one aborts at once."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def registered_only(accelerator: Accelerator, models: list[object], optimizers: list[object]) -> Iterator[None]:
    """Inside the block the Accelerator saves and loads only these of the models and optimisers it prepared.

    Accelerate numbers a checkpoint's files by the order of preparation (model.safetensors, model_1...) and loads
    every object it prepared, so a checkpoint of fewer objects loads only with the others left out."""
    prepared = accelerator._models, accelerator._optimizers
    accelerator._models = [m for m in prepared[0] if any(m is kept for kept in models)]
    accelerator._optimizers = [o for o in prepared[1] if any(o is kept for kept in optimizers)]
    try:
        yield
    finally:
        accelerator._models, accelerator._optimizers = prepared


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require gradients inside the block (no weight-gradient work)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode (dropout off) inside the block, its own mode again after it."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
