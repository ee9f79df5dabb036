"""Exact fast BLEU against nltk, then the full COCO protocol (JSON out).

python -m bench.bleu [--data ../shared/data] [--hypotheses 200] [--self-bleu 5000]

1. nltk and ours on the same hypotheses (training captions) against all 10,000 COCO test references,
   BLEU-2..5, in one run: asserts bit-for-bit equality and prints the speed ratio.
2. Ours alone on the full protocol: 10,000 hypotheses x 10,000 references, BLEU-2..5 (index build
   included), and Self-BLEU-2..5 over 5,000 samples.
Times are CPU seconds of this process (time.process_time) and wall seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from relgan.io_utils import emit_json, read_text_lines
from relgan.metrics.bleu import ReferenceIndex, self_bleu_scores_by_order
from relgan.tokenization import reference_words

REPO = Path(__file__).resolve().parent.parent

ORDERS = (2, 3, 4, 5)


def clock(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("RELGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--hypotheses", type=int, default=200, help="hypotheses scored by nltk too")
    parser.add_argument("--self-bleu", type=int, default=5000, help="samples for Self-BLEU")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    data = Path(args.data) / "image_coco"
    train = [reference_words(line) for line in read_text_lines(data / "train.txt", "train")]
    test = [reference_words(line) for line in read_text_lines(data / "test.txt", "test")]
    hypotheses = train[: args.hypotheses]

    smooth = SmoothingFunction().method1
    nltk_scores, nltk_time = clock(lambda: {
        n: [sentence_bleu(test, h, weights=(1 / n,) * n, smoothing_function=smooth) for h in hypotheses]
        for n in ORDERS})
    ours_scores, ours_time = clock(lambda: ReferenceIndex(test, max(ORDERS)).scores(hypotheses, ORDERS))
    equal = all(nltk_scores[n] == ours_scores[n] for n in ORDERS)

    index, build_time = clock(lambda: ReferenceIndex(test, max(ORDERS)))
    full, score_time = clock(lambda: index.scores(train, ORDERS))
    pool = train[: args.self_bleu]
    self_bleu, self_time = clock(lambda: self_bleu_scores_by_order(pool, ORDERS))

    def mean(values):
        return sum(values) / len(values)

    result = {
        "references": len(test),
        "same_hypotheses": {
            "hypotheses": len(hypotheses), "orders": list(ORDERS), "bitwise_equal": equal,
            "nltk": nltk_time, "ours": ours_time,
            "speedup_cpu": nltk_time["cpu_seconds"] / ours_time["cpu_seconds"],
        },
        "full_protocol": {
            "hypotheses": len(train), "index_build": build_time, "scoring": score_time,
            "total_cpu_seconds": build_time["cpu_seconds"] + score_time["cpu_seconds"],
            **{f"bleu-{n}": mean(full[n]) for n in ORDERS},
        },
        "self_bleu": {"samples": len(pool), **self_time, **{f"self-bleu-{n}": mean(self_bleu[n]) for n in ORDERS}},
    }
    emit_json(result, args.out)
    if not equal:
        raise SystemExit("BLEU differs from nltk")


if __name__ == "__main__":
    main()
