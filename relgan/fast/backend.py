"""Choosing and applying a backend: which reference methods the fast paths replace, on which modules.

``run.backend`` (or ``apply(..., setting=...)``):

* ``reference`` - the models in ``relgan/models`` as written, on every device;
* ``auto`` (default) - on CPU the C++ kernels (and oneDNN products) replace the methods of each unit that is
  verified for this code (its fingerprint, ``fingerprint.py``) and on this machine (a parity probe at first use,
  cached per machine and build); any other unit keeps its reference code, with one warning. Without a C++
  compiler the reference runs, with one warning. On CUDA training steps are replayed as CUDA graphs (the
  trainer's ``StepGraph``) and the models run their reference code;
* ``fast`` - as ``auto``, but kernels that cannot be built are an error.

``RELGAN_CPU_KERNELS=0`` turns ``auto`` into ``reference`` for the C++ kernels (as before this setting existed);
``RELGAN_REQUIRE_KERNELS=1`` turns ``auto`` into ``fast`` (CI: no silent fallback). The replaced methods are
instance attributes of the module (``module.__dict__``), so :func:`remove` restores the reference exactly.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from relgan.config import BACKENDS
from relgan.errors import ConfigError
from relgan.fast import build, fingerprint, parity
from relgan.io_utils import atomic_write_text
from relgan.models.generator import Generator
from relgan.models.relational_memory import RelationalMemory

logger = logging.getLogger("relgan")

DISABLE_VARIABLE = "RELGAN_CPU_KERNELS"
REQUIRE_VARIABLE = "RELGAN_REQUIRE_KERNELS"


class BackendError(ConfigError):
    """``run.backend=fast`` where the kernels cannot be had."""


@dataclass
class BackendReport:
    """What :func:`apply` did: the backend in effect (``fast`` or ``reference``), the instruction set, the methods
    replaced, and why any unit kept its reference code."""

    backend: str
    device: str
    isa: str | None = None
    replaced: list[str] = field(default_factory=list)
    reference: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        if self.backend == "reference" or not self.replaced:
            extra = "" if self.backend == "reference" else " (no fast path applies here)"
            return f"backend: reference on {self.device}: the models in relgan/models run as written{extra}"
        kept = "; reference code for " + ", ".join(self.reference) if self.reference else ""
        return (
            f"backend: fast on {self.device}: C++ kernels built for {self.isa} replace {', '.join(self.replaced)}{kept}"
        )


def resolve(setting: str) -> str:
    """The effective setting after the environment switches."""
    if setting not in BACKENDS:
        raise ValueError(f"unknown backend {setting!r}; choose one of {', '.join(BACKENDS)}")
    if setting == "auto" and os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return "reference"
    if setting == "auto" and os.environ.get(REQUIRE_VARIABLE) == "1":
        return "fast"
    return setting


def apply(
    *modules: nn.Module, setting: str = "auto", device: torch.device | str = "cpu", log: bool = True
) -> BackendReport:
    """Replace the reference methods of ``modules`` (and of their submodules that are units, such as a
    generator's relational memory) with the fast paths where they apply; returns (and logs) what it did."""
    setting, device = resolve(setting), torch.device(device)
    report = BackendReport(backend=setting, device=device.type)
    if setting == "reference" or device.type != "cpu":
        if setting == "fast" and device.type != "cpu":
            report.reference["all modules"] = "the C++ kernels are for CPUs (CUDA runs CUDA graphs instead)"
        _log(report, log)
        return report
    try:
        kernels = build.load(build.default_isa())
    except build.KernelsUnavailable as exc:
        if setting == "fast":
            raise BackendError(f"run.backend=fast: {exc}; use run.backend=auto or reference") from None
        logger.warning("C++ CPU kernels unavailable (%s); the reference code runs (slower)", exc)
        report.backend = "reference"
        _log(report, log)
        return report
    report.backend, report.isa = "fast", kernels.isa
    for module in modules:
        for unit_module in _units(module):
            _apply_unit(unit_module, kernels, report)
    _log(report, log)
    return report


class FastPath(functools.partial):
    """A fast path bound to its module and kernels, set on the module in place of a reference method (the
    fingerprint leaves it out)."""

    relgan_fast_path = True


def remove(module: nn.Module) -> None:
    """Undo :func:`apply` on ``module`` and its submodules: every method is the reference's again."""
    for child in module.modules():
        for name in child.__dict__.pop("_fast_paths", ()):
            child.__dict__.pop(name, None)


def fast_paths(module: nn.Module) -> tuple[str, ...]:
    """The methods of ``module`` that a fast path replaces."""
    return tuple(module.__dict__.get("_fast_paths", ()))


def _units(module: nn.Module) -> list[nn.Module]:
    """The unit modules inside ``module``, innermost first (a generator's core before the generator)."""
    found = [m for m in module.modules() if fingerprint.unit_of(m) is not None]
    return sorted(found, key=lambda m: fingerprint.unit_of(m) != "relational_memory")


def _apply_unit(module: nn.Module, kernels: build.Kernels, report: BackendReport) -> None:
    from relgan.fast import discriminator as fast_discriminator
    from relgan.fast import generator as fast_generator
    from relgan.fast import relational_memory as fast_rmc

    unit = fingerprint.unit_of(module)
    name = type(module).__name__
    if unit is None or fast_paths(module):
        return
    if isinstance(module, Generator) and module.num_classes:  # no fast path exists for it: nothing to fix
        report.reference[name] = "it is class-conditional, and its fast paths are for unconditional generators"
        logger.info("fast backend: %s runs its reference code: %s", name, report.reference[name])
        return
    why = _why_reference(unit, module, kernels)
    if why is not None:
        report.reference[name] = why
        logger.warning("fast backend: %s runs its reference code: %s", name, why)
        return
    functions: dict[str, Callable[..., Any]]
    if isinstance(module, RelationalMemory):
        functions = {"unroll": fast_rmc.unroll, "step": fast_rmc.step}
    elif isinstance(module, Generator):
        core = module.core
        recorder = (
            functools.partial(fast_rmc.RecordedSteps, core, kernels)
            if isinstance(core, RelationalMemory) and "step" in fast_paths(core)
            else None
        )
        functions = {
            "token_nll": fast_generator.token_nll,
            "sample": functools.partial(fast_generator.sample, recorder=recorder),
            "sample_tokens": fast_generator.sample_tokens,
            "rollout": fast_generator.rollout,
        }
    else:
        functions = {"classify": fast_discriminator.classify}
    for method, function in functions.items():
        module.__dict__[method] = FastPath(function, module, kernels)
    module.__dict__["_fast_paths"] = tuple(functions)
    report.replaced.append(f"{name}.{'/'.join(functions)}")


def _why_reference(unit: str, module: nn.Module, kernels: build.Kernels) -> str | None:
    """None if ``module``'s unit may run its fast path here, else the reason it may not."""
    from relgan.fast import relational_memory as fast_rmc

    if any(p.dtype != torch.float32 for p in module.parameters()):
        return "its weights are not float32"
    if isinstance(module, RelationalMemory) and (reason := fast_rmc.supports(module)) is not None:
        return reason
    if not fingerprint.is_verified(module):
        return (
            f"its code differs from the code the fast path was verified against (re-verify with "
            f"`{fingerprint.VERIFY_COMMAND}`)"
        )
    record = isinstance(module, Generator) and "step" in fast_paths(module.core)
    problems = _probe(unit, module, kernels, record)
    if problems:
        return f"it disagrees with the reference on this machine ({problems[0]})"
    return None


def _probe(unit: str, module: nn.Module, kernels: build.Kernels, record: bool) -> list[str]:
    """The parity probe of ``unit`` at ``module``'s sizes, cached per machine, build and fingerprint."""
    cache = probe_cache(kernels)
    key = " ".join(
        [
            unit,
            fingerprint.fingerprint(module),
            _shape_key(module),
            f"record={record}",
            f"threads={torch.get_num_threads()}",
            build.cpu_model(),
        ]
    )
    results = _read_json(cache)
    if key not in results:
        problems = parity.probe(unit, module, kernels, **({"record": record} if unit == "generator" else {}))
        results[key] = problems
        try:  # atomic: several processes of one run may probe at once
            atomic_write_text(cache, json.dumps(results, indent=1))
        except OSError:  # a read-only cache: probe again next time
            pass
    return results[key]


def probe_cache(kernels: build.Kernels) -> Path:
    """The file of probe verdicts, beside the build."""
    return kernels.build_dir / "parity-probes.json"


def _shape_key(module: nn.Module) -> str:
    return ",".join(f"{name}{tuple(p.shape)}" for name, p in module.named_parameters())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _log(report: BackendReport, log: bool) -> None:
    if log:
        logger.info(report.line())
