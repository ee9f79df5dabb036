"""Re-verify the fast paths against the reference models and record the verified fingerprints.

python -m relgan.fast.verify [--isa avx2] [--threads 1,2]

Builds the kernels for every instruction set this CPU executes (or ``--isa``), runs every parity check of
``parity.COVERAGE`` on 1 and 2 threads, prints one JSON summary and, when all pass, records the current
fingerprints of the reference code in ``verified.json`` (run it after changing ``relgan/models`` or a kernel,
and commit the file). Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from relgan.config import DiscriminatorConfig, GeneratorConfig
from relgan.fast import build, fingerprint, parity
from relgan.models import Discriminator, Generator


def current_fingerprints() -> dict[str, list[str]]:
    """unit -> [fingerprint of the reference code as it is now]."""
    generator = Generator(GeneratorConfig(embedding_dim=4, num_heads=1, head_size=4), 7, 4, 0)
    lstm = Generator(GeneratorConfig(architecture="lstm", embedding_dim=4, hidden_size=4), 7, 4, 0)
    discriminator = Discriminator(
        DiscriminatorConfig(embedding_dim=4, num_representations=2, filter_sizes=[2], num_filters=3, hidden_size=3),
        7,
        4,
    )
    return {
        "relational_memory": [fingerprint.fingerprint(generator.core)],
        "generator": [fingerprint.fingerprint(generator), fingerprint.fingerprint(lstm)],  # parity covers both
        "discriminator": [fingerprint.fingerprint(discriminator)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", action="append", help="instruction set(s) to verify (default: all executable)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    args = parser.parse_args(argv)
    isas = args.isa or build.executable_isas()
    threads = [int(t) for t in args.threads.split(",")]
    failures: dict[str, list[str]] = {}
    build.prebuild(isas)
    for isa in isas:
        kernels = build.load(isa)
        for count in threads:
            torch.set_num_threads(count)
            for case in parity.COVERAGE:
                problems = case.run(kernels)
                if problems:
                    failures[f"{isa}, {count} threads, {case.unit}: {case.label}"] = problems
    summary = {"isas": isas, "threads": threads, "cases": len(parity.COVERAGE), "failures": failures}
    if not failures:
        fingerprint.VERIFIED_FILE.write_text(json.dumps(current_fingerprints(), indent=2) + "\n")
        summary["recorded"] = str(fingerprint.VERIFIED_FILE)
    print(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
