"""What the embedding metrics and LM judges give real text: the floor and ceiling a generator is read against.

python -m experiments.real_text_baselines [--data ../shared/data] [--count 2000] \
    [--out results/real-text-baselines.json]

On COCO (image_coco) with N = --count sentences per set, drawn at random (seed 0): FED-MiniLM and MAUVE of
real training sentences against other training sentences, against test sentences, and of test sentences
against the same sentences with their words shuffled; lm_score and reverse_lm_score of N real training
sentences and of the same sentences shuffled (the judges of relgan.metrics.lm_judges, trained on the whole
training split and scored on the whole test split). Needs the 'fed' extra for FED and MAUVE.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

from experiments.commands import portable_command
from experiments.entry import run

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from relgan.evaluation import TextEvaluator  # noqa: E402
from relgan.io_utils import emit_json, read_text_lines  # noqa: E402
from relgan.metrics.lm_judges import LanguageModelJudges  # noqa: E402


def shuffled(sentences: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(s.split(), len(s.split()))) for s in sentences]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("RELGAN_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--out")
    args = parser.parse_args()
    folder = Path(args.data) / "image_coco"
    train = [s.strip() for s in read_text_lines(folder / "train.txt", "train split") if s.strip()]
    test = [s.strip() for s in read_text_lines(folder / "test.txt", "test split") if s.strip()]
    rng = random.Random(0)
    picked = rng.sample(train, 2 * args.count)
    train_a, train_b = picked[: args.count], picked[args.count:]
    test_n = rng.sample(test, args.count)
    result: dict = {"count": args.count,
                    "command": portable_command(["python", "-m", "experiments.real_text_baselines", *sys.argv[1:]])}

    def embedding(samples: list[str], references: list[str]) -> dict:
        report = TextEvaluator(references, "full", [4]).fed(samples)
        return {"fed-minilm": report["fed-minilm"], "mauve": report["mauve"]}

    result["train_vs_other_train"] = embedding(train_a, train_b)
    result["train_vs_test"] = embedding(train_a, test_n)
    result["test_shuffled_vs_test"] = embedding(shuffled(test_n, 1), test_n)
    judges = LanguageModelJudges(train, test)
    result["lm_judge"] = judges.spec.describe()
    result["lm_score_of_test"] = judges.test_score()
    for name, sentences in (("train", train_a), ("train_shuffled", shuffled(train_a, 2))):
        scores = judges(sentences)
        result[f"judges_{name}"] = {k: scores[k] for k in ("lm_score", "reverse_lm_score")}
    emit_json(result, args.out)


if __name__ == "__main__":
    run(main)
