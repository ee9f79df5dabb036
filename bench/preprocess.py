"""Preprocessing speed: reading and tokenising a text corpus of many short lines (JSON out).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m bench.preprocess --lines 200000 --out results/preprocess-cpu.json

Writes ``--lines`` short lines (3 to 9 words from a 15-word vocabulary, seeded) as the training file and a tenth as
many as the test file in a temporary folder, then times ``relgan.data.read_splits`` on them (the word split of
data.tokenization=nltk; the datasets cache goes to the same temporary folder, so nothing is reused between runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from relgan.config import DataConfig
from relgan.data import read_splits
from relgan.fast.build import cpu_model
from relgan.io_utils import emit_json

WORDS = "a man rides a horse on the beach dog runs in park with ball".split()


def write_lines(path: Path, count: int, rng: random.Random) -> None:
    lines = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(count))
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--out")
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["HF_DATASETS_CACHE"] = str(Path(folder) / "cache")
        train, test = Path(folder) / "train.txt", Path(folder) / "test.txt"
        write_lines(train, args.lines, rng)
        write_lines(test, args.lines // 10, rng)
        config = DataConfig(source="files", train_file=str(train), test_file=str(test))
        wall, cpu = time.perf_counter(), time.process_time()
        train_split, test_split = read_splits(config)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    emit_json({"machine": platform.machine(), "cpu_model": cpu_model(), "lines": args.lines,
               "train_sentences": len(train_split.words), "test_sentences": len(test_split.words),
               "tokenization": config.tokenization, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)},
              args.out)


if __name__ == "__main__":
    main()
