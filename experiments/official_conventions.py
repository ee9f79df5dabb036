"""How this code's tokenisation and decoding differ from the official RelGAN code's, measured (JSON out).

python -m experiments.official_conventions [--data ../shared/data] [--legacy-nltk DIR] [--run RUN [--checkpoint DIR]...]
                                     [--out FILE]

1. Tokenisation. The official code calls ``nltk.word_tokenize``: punkt sentence splitting, then the word
   tokenizer on each sentence. Here ``NLTKWordTokenizer`` sees the whole line, because punkt's English model
   is downloaded data these machines cannot fetch. Punkt is approximated by an untrained
   ``PunktSentenceTokenizer``, which breaks at every sentence-final period followed by a space (the English
   model also knows abbreviations such as "st.", so it breaks at most as often). Per split: the lines whose
   tokens differ, and the vocabulary size.
   ``--legacy-nltk DIR`` adds the word tokenizer of another nltk release from its unpacked source tree (for
   nltk 3.2.3, the version RelGAN's README pins: ``pip download nltk==3.2.3 --no-deps`` and unpack), built as
   that release's ``word_tokenize`` builds it.
2. Decoding (``--run``). 10,000 samples of the run's generator (its final export, or each ``--checkpoint``),
   decoded here (cut at the first ``<eos>``) and as the official ``code_to_text`` does (drop every ``<eos>``
   in the row): the share of rows that differ and BLEU/Self-BLEU under the ``relgan`` and ``full`` protocols for both.
"""

from __future__ import annotations

import argparse
import os
import re
import types
from pathlib import Path

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer

from experiments.entry import run
from relgan.checkpoint import load_generator, load_run_config
from relgan.errors import RelganError
from relgan.evaluation import TextEvaluator
from relgan.io_utils import emit_json, read_text_lines
from relgan.sampling import sample_ids

REPO = Path(__file__).resolve().parent.parent

# split -> lower-cased first: training text is (the vocabulary), BLEU references are not
SPLITS = {"image_coco/train.txt": True, "image_coco/test.txt": False, "emnlp_news/test.txt": False}
ORDERS = (2, 3, 4, 5)


def legacy_word_tokenizer(source: Path):
    """The word tokenizer of the nltk release unpacked at ``source``: its ``TreebankWordTokenizer`` with the
    regex additions its ``nltk/tokenize/__init__.py`` makes for ``word_tokenize``."""
    treebank = types.ModuleType("legacy_treebank")
    exec(compile((source / "nltk/tokenize/treebank.py").read_text(), "legacy treebank.py", "exec"), treebank.__dict__)
    namespace = {"re": re, "TreebankWordTokenizer": treebank.TreebankWordTokenizer}
    setup = [line for line in (source / "nltk/tokenize/__init__.py").read_text().splitlines()
             if line.startswith(("_treebank_word_tokenizer", "improved_"))]
    exec("\n".join(setup), namespace)
    return namespace["_treebank_word_tokenizer"]


def tokenisation_report(path: Path, lower: bool, legacy) -> dict:
    """Lines and vocabulary of one split under each tokenisation: the word tokenizer on the whole line (here),
    after punkt, and the same with ``legacy``'s word tokenizer."""
    lines = [line.lower() if lower else line for line in read_text_lines(path, str(path)) if line.strip()]
    punkt = PunktSentenceTokenizer()
    sentences = [punkt.tokenize(line) for line in lines]
    words = {"": NLTKWordTokenizer().tokenize, **({"legacy_": legacy.tokenize} if legacy is not None else {})}
    tokens = {}
    for prefix, split in words.items():
        tokens[f"{prefix}line"] = [split(line) for line in lines]
        tokens[f"{prefix}punkt"] = [[w for part in parts for w in split(part)] for parts in sentences]
    report = {"lines": len(lines), "lower_cased": lower,
              "lines_with_several_punkt_sentences": sum(len(parts) > 1 for parts in sentences)}
    for name, rows in tokens.items():
        report[f"vocabulary_{name}"] = len({word for row in rows for word in row})
        if name != "line":
            report[f"lines_differing_{name}"] = sum(a != b for a, b in zip(rows, tokens["line"], strict=True))
    return report


def decoding_report(run: Path, checkpoint: Path | None, num_samples: int, seed: int) -> dict:
    generator, tokenizer, _ = load_generator(run, checkpoint)
    config = load_run_config(run)
    eos = tokenizer.eos_token_id
    ids = sample_ids(generator.eval(), num_samples, 1000, seed).tolist()
    first_eos = tokenizer.batch_decode([row[: row.index(eos)] if eos in row else row for row in ids])
    drop_eos = tokenizer.batch_decode([[token for token in row if token != eos] for row in ids])
    if config.data.test_file is None:
        raise RelganError(f"--run {run}: trained without data.test_file; decoding is compared on text runs only")
    references = [line for line in read_text_lines(config.data.test_file, "data.test_file") if line.strip()]
    report = {"run": str(run), "checkpoint": str(checkpoint or "final export"), "samples": num_samples, "seed": seed,
              "rows_differing": sum(a != b for a, b in zip(first_eos, drop_eos, strict=True)),
              "rows_differing_in_first_200": sum(a != b for a, b in zip(first_eos[:200], drop_eos[:200], strict=True))}
    for protocol in ("relgan", "full"):
        evaluator = TextEvaluator(references, protocol, ORDERS)
        for name, texts in (("first_eos", first_eos), ("drop_eos", drop_eos)):
            scores = evaluator(texts, ["bleu", "self_bleu"])
            report[f"{protocol}_{name}"] = {key: value for key, value in scores.items() if "bleu" in key}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("RELGAN_SHARED_DATA", str(REPO.parent / "shared/data")))
    parser.add_argument("--legacy-nltk", type=Path, help="unpacked source tree of another nltk release")
    parser.add_argument("--run", type=Path, help="a finished run whose samples are decoded both ways")
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help="a checkpoint of --run to decode instead of its final export (repeatable)")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    legacy = legacy_word_tokenizer(args.legacy_nltk) if args.legacy_nltk else None
    result: dict = {"tokenisation": {}}
    for split, lower in SPLITS.items():
        path = Path(args.data) / split
        if path.is_file():
            result["tokenisation"][split] = tokenisation_report(path, lower, legacy)
    if args.run:
        result["decoding"] = [decoding_report(args.run, checkpoint, args.num_samples, args.seed)
                              for checkpoint in args.checkpoint or [None]]
    emit_json(result, args.out)


if __name__ == "__main__":
    run(main)
