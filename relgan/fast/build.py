"""Building and loading the C++ CPU kernels (``csrc/``), one build per instruction set.

Each build is compiled for one instruction set explicitly (never ``-march=native``), so that a build made on
one CPU runs on every CPU that has that set, and every set the machine can execute can be tested on it:

* ``baseline`` - x86-64 (SSE2), runs on every x86-64 CPU;
* ``avx2``     - x86-64-v3 (AVX2, FMA);
* ``avx512``   - x86-64-v4 (AVX-512 F/BW/CD/DQ/VL);
* ``generic``  - on other architectures: the compiler's default target.

A build's name (and the namespace of its ops, ``torch.ops.relgan_<isa>_<op>``) holds the instruction set and a
hash of the sources, the flags, the torch and Python versions and the CPU model (builds are tuned for the
CPU that builds them): two checkouts share a build when their kernels are the same and never rebuild each
other's. The sources are staged into the build's own directory (``src/``) and compiled from there, so that
nothing of a build names the checkout it came from (torch rebuilds an extension whose compile arguments
changed, and an include path of each checkout did). torch caches builds in ``$TORCH_EXTENSIONS_DIR``
(default ``~/.cache/torch_extensions``).

torch marks a build in progress with a ``lock`` file that a killed build leaves behind, after which every load
waits forever. relgan takes an ``fcntl`` lock of its own (``relgan.lock``, released by the kernel however its
holder ends) around every load and compile check: holding it, no other relgan process is building, so a
``lock`` file still there is stale and is removed, with one warning.

A build compiles the sources as one translation unit (``kernels.cpp`` in its build directory includes each of
``csrc/*.cpp``): ATen's headers took 15 s of each source's 16-24 s, so one unit compiles in about half the
time of five on two cores, and builds for several instruction sets can run side by side (:func:`prebuild`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger("relgan")

CSRC = Path(__file__).with_name("csrc")
STAGED = "src"  # the sources' copy in each build directory
SOURCES = sorted(CSRC.glob("*.cpp"))
HEADERS = sorted(CSRC.glob("*.h"))
ISA_VARIABLE = "RELGAN_CPU_ISA"
OP_LIBRARIES = ("relational_memory", "conv_max", "highway", "cross_entropy", "sampling")

# instruction set -> (compiler flags, CPU flags of /proc/cpuinfo it needs). Each build is scheduled for the
# CPU that builds it (-mtune=native: the conv-max kernel ran 1.29 s with generic tuning against 1.01 s tuned
# for the 2-core AMD VM), which changes no instruction it may use; the build name holds that CPU's model.
X86_ISAS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "baseline": (["-march=x86-64", "-mtune=native"], ()),
    "avx2": (["-march=x86-64-v3", "-mtune=native"], ("avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm")),
    "avx512": (
        ["-march=x86-64-v4", "-mtune=native"],
        ("avx2", "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
    ),
}


class KernelsUnavailable(RuntimeError):
    """The kernels of an instruction set could not be built or loaded here."""


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    line = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo; the platform's processor string elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )


def executable_isas() -> list[str]:
    """The instruction sets this CPU can execute, narrowest first."""
    if not _is_x86():
        return ["generic"]
    flags = _cpu_flags()
    return [isa for isa, (_, needs) in X86_ISAS.items() if all(flag in flags for flag in needs)]


def default_isa() -> str:
    """``$RELGAN_CPU_ISA`` if set (it must be executable here), else the widest set the CPU executes."""
    chosen = os.environ.get(ISA_VARIABLE)
    available = executable_isas()
    if chosen:
        if chosen not in available:
            raise KernelsUnavailable(f"{ISA_VARIABLE}={chosen}: this CPU executes {', '.join(available)}")
        return chosen
    return available[-1]


def _flags(isa: str) -> list[str]:
    target = X86_ISAS[isa][0] if isa in X86_ISAS else []
    return ["-O3", *target, "-fopenmp", "-fvisibility=hidden", f"-DRELGAN_OPS_PREFIX=relgan_{isa}"]


def build_name(isa: str) -> str:
    """relgan_<isa>_<hash of the sources, headers, translation unit, flags, torch and Python versions and the CPU
    model>."""
    digest = hashlib.sha256()
    for path in [*SOURCES, *HEADERS]:
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(_unity_text().encode())
    digest.update(" ".join([*_flags(isa), torch.__version__, sys.version.split()[0], cpu_model()]).encode())
    return f"relgan_{isa}_{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class Kernels:
    """The ops of one instruction-set build: ``kernels.relational_memory.forward(...)`` and so on."""

    isa: str
    name: str
    build_dir: Path

    def __getattr__(self, library: str):
        if library not in OP_LIBRARIES:
            raise AttributeError(library)
        return getattr(torch.ops, f"relgan_{self.isa}_{library}")


def _unity_text() -> str:
    """The one translation unit of a build (its staged sources are on the include path)."""
    return "".join(f'#include "{source.name}"\n' for source in SOURCES)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomically, and only when the content changes: a newer file would make ninja recompile."""
    if path.is_file() and path.read_bytes() == data:
        return
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)


def _unity_source(build_dir: Path) -> Path:
    """``build_dir/kernels.cpp``, the one translation unit that includes every source, and the sources staged in
    ``build_dir/src`` (the include path: the same for every checkout of the same kernels)."""
    staged = build_dir / STAGED
    staged.mkdir(parents=True, exist_ok=True)
    for source in [*SOURCES, *HEADERS]:
        _write_if_changed(staged / source.name, source.read_bytes())
    path = build_dir / "kernels.cpp"
    _write_if_changed(path, _unity_text().encode())
    return path


@contextlib.contextmanager
def _build_lock(build_dir: Path) -> Iterator[None]:
    """relgan's lock of one build directory; inside it, torch's ``lock`` file can only be a dead build's."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / "relgan.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            stale = build_dir / "lock"
            if stale.exists():
                logger.warning("%s: a build was killed before it ended; its lock file is removed", build_dir)
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _built(isa: str) -> bool:
    """Whether the build of ``isa`` for these sources is in the cache."""
    from torch.utils.cpp_extension import _get_build_directory

    name = build_name(isa)
    try:
        return (Path(_get_build_directory(name, verbose=False)) / f"{name}.so").is_file()
    except OSError:
        return False


@functools.cache
def load(isa: str) -> Kernels:
    """Build (once per machine and source version) and load the kernels of ``isa``; KernelsUnavailable if that
    fails (no compiler, no ninja, a CPU without the instruction set)."""
    if isa not in executable_isas():
        raise KernelsUnavailable(f"this CPU does not execute {isa} (it executes {', '.join(executable_isas())})")
    from torch.utils.cpp_extension import _get_build_directory
    from torch.utils.cpp_extension import load as load_extension

    name = build_name(isa)
    cached = _built(isa)
    try:
        build_dir = Path(_get_build_directory(name, verbose=False))
        if not cached:
            print(
                f"relgan: building the C++ CPU kernels for {isa} (once per machine and kernel version) ...",
                end="",
                file=sys.stderr,
                flush=True,
            )
        start = time.perf_counter()
        with _build_lock(build_dir):
            load_extension(
                name=name,
                sources=[str(_unity_source(build_dir))],
                extra_cflags=_flags(isa),
                extra_ldflags=["-fopenmp"],
                extra_include_paths=[str(build_dir / STAGED)],
                is_python_module=False,
            )
        if not cached:
            print(f" done in {time.perf_counter() - start:.0f} s ({build_dir})", file=sys.stderr, flush=True)
    except Exception as exc:  # no compiler, no ninja, a read-only cache: all mean "no kernels here"
        if not cached:
            print(" failed", file=sys.stderr, flush=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KernelsUnavailable(f"building the {isa} kernels failed: {reason[:200]}") from None
    return Kernels(isa, name, build_dir)


_BUILD_ONE = """
import sys
from relgan.fast import build
try:
    build.load(sys.argv[1])
except build.KernelsUnavailable:
    pass
"""


def prebuild(isas: list[str]) -> None:
    """Build the kernels of several instruction sets side by side, one process (one compiler) each, where they
    are not built yet; :func:`load` then only loads them, and reports any build that failed."""
    import subprocess

    missing = [isa for isa in isas if not _built(isa)]
    if len(missing) < 2:
        return
    print(
        f"relgan: building the C++ CPU kernels for {', '.join(missing)} side by side ...", file=sys.stderr, flush=True
    )
    builds = [
        subprocess.Popen([sys.executable, "-c", _BUILD_ONE, isa], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for isa in missing
    ]
    for process in builds:
        process.wait()


def compile_only(isa: str) -> None:
    """Compile every source for ``isa`` to object code, without linking or loading: a CPU that cannot execute
    an instruction set (AVX-512 on an AVX2 machine) still checks that its build compiles. Remembered per build
    name; KernelsUnavailable with the compiler's first error if it does not compile."""
    from torch.utils.cpp_extension import _get_build_directory

    name = build_name(isa)
    build_dir = Path(_get_build_directory(name, verbose=False))
    marker = build_dir / "compiles"
    with _build_lock(build_dir):  # a second process waits for the first's compile, then finds its marker
        if marker.is_file():
            return
        _compile_object(isa, name, build_dir)
        marker.write_text(f"{name}\n")


def _compile_object(isa: str, name: str, build_dir: Path) -> None:
    """Compile the unity source of ``isa`` to an object file that is thrown away; KernelsUnavailable if it fails."""
    import subprocess
    import tempfile

    from torch.utils.cpp_extension import include_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    unity = _unity_source(build_dir)
    includes = [f"-I{path}" for path in [str(build_dir / STAGED), *include_paths()]]
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [
                os.environ.get("CXX", "c++"),
                "-std=c++17",
                "-fPIC",
                f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
                f"-DTORCH_EXTENSION_NAME={name}",
                "-DTORCH_API_INCLUDE_EXTENSION_H",
                *_flags(isa),
                *includes,
                "-c",
                str(unity),
                "-o",
                str(Path(scratch) / "kernels.o"),
            ],
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        error = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
        raise KernelsUnavailable(f"the {isa} build does not compile: {error[:300]}")
