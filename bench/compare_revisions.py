"""Training speed of this checkout against another revision, interleaved in one run (JSON out).

python -m bench.compare_revisions --old REV [--rounds 5] [--reference] [--isas] [--malloc] [--out FILE]

Checks REV out into a temporary git worktree and starts one worker process per side (``speed_worker.py``:
each side's own trainer at paper sizes on COCO, OMP_NUM_THREADS=2): the old revision, this checkout, and
with the flags this checkout with ``run.backend=reference``, with the kernels of every other instruction set
the CPU executes and with glibc's malloc tunables in its environment (``--malloc``: GLIBC_TUNABLES=
MALLOC_TUNABLES, the settings the old revision restarted itself with). Each round runs every workload once
on every side, one side at a time and in a rotating order, so that a slow period of the machine hits all sides
alike: an MLE batch (three times), an adversarial iteration and one evaluation batch of 1,000 samples (after one
warm-up round).
Reports the medians and each side's ratio to this checkout's default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from relgan.io_utils import emit_json

REPO = Path(__file__).resolve().parent.parent

WORKLOADS = (("mle", 3), ("adversarial", 1), ("sample", 1))
# what the old revision set by restarting itself, and what docs/performance.md suggests as an opt-in
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=17179869184"


class Worker:
    def __init__(self, checkout: Path, extra: list[str], env: dict[str, str]) -> None:
        command = [sys.executable, str(REPO / "bench" / "speed_worker.py"), str(checkout), *extra]
        # the checkout's relgan (and an old revision's bench modules) before the installed one
        path = os.pathsep.join([str(checkout), str(checkout / "bench"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=dict(env, PYTHONPATH=path), cwd=checkout)
        assert self.process.stdin is not None and self.process.stdout is not None  # both piped
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        line = self.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"{' '.join(command)} did not start")

    def time(self, workload: str) -> float:
        self.stdin.write(workload + "\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the revision to compare against (e.g. a commit)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time run.backend=reference")
    parser.add_argument("--isas", action="store_true", help="also time every other instruction-set build")
    parser.add_argument("--malloc", action="store_true", help="also time with GLIBC_TUNABLES=MALLOC_TUNABLES")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1")
    # the old worktree lives in a temporary directory, where ../shared/data is not: both sides read this one's
    env.setdefault("RELGAN_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    for name in ("RELGAN_CPU_ISA", "GLIBC_TUNABLES", "RELGAN_MALLOC_TUNED"):
        env.pop(name, None)
    from relgan.fast.build import default_isa, executable_isas

    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.old], check=True,
                       capture_output=True)
        sides: dict[str, Worker] = {}
        try:
            sides["old"] = Worker(old, [], env)
            sides["new"] = Worker(REPO, [], env)
            if args.reference:
                sides["new, reference backend"] = Worker(REPO, ["--backend", "reference"], env)
            if args.malloc:
                sides["new, GLIBC_TUNABLES"] = Worker(REPO, [], dict(env, GLIBC_TUNABLES=MALLOC_TUNABLES))
            if args.isas:
                for isa in executable_isas():
                    if isa != default_isa():
                        sides[f"new, {isa} kernels"] = Worker(REPO, [], dict(env, RELGAN_CPU_ISA=isa))
            names = list(sides)
            times: dict[str, dict[str, list[float]]] = {name: {w: [] for w, _ in WORKLOADS} for name in names}
            for round_ in range(args.rounds + 1):
                order = names[round_ % len(names):] + names[: round_ % len(names)]
                for workload, count in WORKLOADS:
                    for _ in range(count):
                        for name in order:
                            seconds = sides[name].time(workload)
                            if round_:  # round 0 warms up
                                times[name][workload].append(seconds)
        finally:
            for worker in sides.values():
                worker.close()
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    medians = {name: {workload: statistics.median(values) for workload, values in per.items()}
               for name, per in times.items()}
    emit_json({"old": args.old, "rounds": args.rounds, "isa": default_isa(), "medians_seconds": medians,
          "ratio_to_new": {name: {w: m[w] / medians["new"][w] for w in m} for name, m in medians.items()},
          "seconds": times}, args.out)


if __name__ == "__main__":
    main()
