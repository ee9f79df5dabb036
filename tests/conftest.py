"""Shared fixtures. Tests run offline, single-threaded and seeded; data from ../shared comes in by path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
SMOKE_TEXT = REPO / "tests" / "smoke_text.yaml"  # the same sizes, for text files


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("RELGAN_CACHE", str(cache / "relgan"))


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Accelerate keeps one process-wide state; each in-process run may choose its own precision."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


REQUIRE_KERNELS = os.environ.get("RELGAN_REQUIRE_KERNELS") == "1"  # .ci/run sets it: no kernels is a failure


def load_kernels(isa: str | None = None):
    """The kernels of ``isa`` (default: the widest this CPU executes), or skip the test where they cannot be
    built; a failure instead under RELGAN_REQUIRE_KERNELS=1."""
    from relgan.fast import build

    try:
        return build.load(isa or build.default_isa())
    except build.KernelsUnavailable as exc:
        if REQUIRE_KERNELS:
            pytest.fail(f"RELGAN_REQUIRE_KERNELS=1 but {exc}")
        pytest.skip(str(exc))


def _executable_isas() -> list[str]:
    from relgan.fast.build import executable_isas

    return executable_isas()


_BACKGROUND_BUILDS = """
from relgan.fast import build
for isa in [build.default_isa(), *build.executable_isas()]:  # the one runs use first
    try:
        build.load(isa)
    except build.KernelsUnavailable:
        pass
for isa in [isa for isa in build.X86_ISAS if isa not in build.executable_isas()] if build._is_x86() else []:
    try:
        build.compile_only(isa)
    except build.KernelsUnavailable:
        pass
"""


@pytest.fixture(scope="session", autouse=True)
def _kernel_builds():
    """Builds every instruction set in one background process from the start of the session (a cold cache
    builds for about a minute); with pytest-xdist, the first worker starts it and the others find its builds. A
    test that loads kernels waits on the build lock for the one it needs; a build that fails there fails again,
    with its error, where a test loads it."""
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        yield None
        return
    process = subprocess.Popen([sys.executable, "-c", _BACKGROUND_BUILDS], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    yield process
    process.wait()


@pytest.fixture(scope="session")
def _every_build(_kernel_builds):
    """Every instruction set this CPU executes, built before the first test that needs them all."""
    from relgan.fast import build

    if _kernel_builds is not None:
        _kernel_builds.wait()
    build.prebuild(_executable_isas())


@pytest.fixture(params=_executable_isas())
def kernels(request, _every_build):
    """Each instruction-set build this CPU can execute (baseline x86-64, AVX2, AVX-512), built explicitly."""
    return load_kernels(request.param)


@pytest.fixture
def default_kernels(_every_build):
    return load_kernels()


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run a test on 1 and on 2 threads."""
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark splits (../shared/data or $RELGAN_SHARED_DATA); tests using them skip without them."""
    path = Path(os.environ.get("RELGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "image_coco" / "train.txt").is_file():
        pytest.skip(f"benchmark data not found at {path} (set RELGAN_SHARED_DATA)")
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 300, module: str = "relgan") -> subprocess.CompletedProcess:
    """Run ``python -m relgan ARGS`` (or ``python train.py ARGS``) in a fresh process: real exit codes, stderr."""
    return run_clis([list(args)], cwd=cwd, timeout=timeout, module=module)[0]


def run_clis(calls: list, cwd: Path, timeout: float = 300, module: str = "relgan") -> list:
    """:func:`run_cli` of each argument list in ``calls`` (or (arguments, module) pairs), all started at once:
    their start-up, mostly imports on one core each, overlaps."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    processes = []
    for call in calls:
        args, name = call if isinstance(call, tuple) else (call, module)
        command = ["-m", "relgan"] if name == "relgan" else [str(REPO / f"{name}.py")]
        arguments = [sys.executable, *command, *args]
        processes.append((arguments, subprocess.Popen(arguments, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE, text=True)))
    results = []
    for arguments, process in processes:
        stdout, stderr = process.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(arguments, process.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished run of the smoke config (in-process); copy it before changing it."""
    from relgan.cli import main

    out = tmp_path_factory.mktemp("smoke-runs")
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={out}", "run.name=done"]) == 0
    return out / "done"


# ------------------------------------------------------------------------------------------ the gradient lab


@pytest.fixture(scope="session")
def lab():
    """The exact-gradient lab's game (relgan/gradient_lab.py) and its exact gradient."""
    from relgan.gradient_lab import exact_gradient, make_lab

    game = make_lab()
    return game, exact_gradient(game)[0]


def lab_estimates(lab, algorithm, repeats=400, beta=1.0, seed=0, batch_size=16, warmup=0, **options):
    """``repeats`` estimates by ``algorithm`` with ``options``, each on ``batch_size`` samples (after ``warmup``
    that only train a learned control variate)."""
    from relgan.gradient_lab import estimate, estimator_config

    return estimate(lab, estimator_config(algorithm, **options), beta=beta, batch_size=batch_size, repeats=repeats,
                    seed=seed, warmup=warmup)


def projections(exact, count=6):
    """The exact gradient's direction and random unit directions [count, P] (seeded)."""
    random = torch.randn(count - 1, exact.numel(), generator=torch.Generator().manual_seed(7), dtype=exact.dtype)
    directions = torch.cat([exact.unsqueeze(0), random])
    return directions / directions.norm(dim=1, keepdim=True)


def z_scores(draws, target, directions):
    """z of the mean of each projection of the draws [R, P] onto ``directions`` against ``target`` [P] (or against
    another Estimates' mean, whose standard error counts too). The coordinates of a gradient are strongly
    correlated, so the test is on a few projections, each a scalar mean of independent draws."""
    projected = draws.draws @ directions.t()  # [R, D]
    error = projected.var(dim=0) / len(projected)
    if isinstance(target, torch.Tensor):
        centre = directions @ target
    else:
        other = target.draws @ directions.t()
        centre, error = other.mean(dim=0), error + other.var(dim=0) / len(other)
    return (projected.mean(dim=0) - centre) / error.sqrt()


# Six projections at |z| < 4 each: a false alarm about once in 2,500 seeds.
Z_LIMIT = 4.0
