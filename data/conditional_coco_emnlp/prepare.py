"""A two-class labelled benchmark from the standard splits at hand: COCO captions against EMNLP2017 News
sentences. A sanity benchmark for class-conditional generation (are the classes told apart, is each class's
style kept), not a paper result: the two classes differ in length and vocabulary as much as in content.

python data/conditional_coco_emnlp/prepare.py [--source DIR] [--train-per-class 8000] [--test-per-class 2000]

``--source`` holds image_coco/{train,test}.txt and emnlp_news/test.txt (default: this repository's data/
folder, where data/image_coco/prepare.py and data/emnlp_news/prepare.py put them); each file is checked
against its git blob hash first. Writes data/conditional_coco_emnlp/{train,test}.txt as ``label<TAB>sentence``
lines (data.labelled: true), alternating between the classes: class coco is COCO's first training and first
test captions; class news is the first and the last lines of the EMNLP test split (its training split is not
needed), disjoint.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

from relgan.errors import DataError
from relgan.io_utils import atomic_write_text
from relgan.prepare import git_blob_hash

DATA = Path(__file__).resolve().parent.parent


def _blobs(name: str) -> dict:
    """split -> git blob hash, as data/<name>/prepare.py records them."""
    spec = importlib.util.spec_from_file_location(f"{name}_prepare", DATA / name / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {file.split: file.blob for file in module.FILES}


def _verified_lines(source: Path, name: str, split: str) -> list[str]:
    path = source / name / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"--source: {path} not found; run data/{name}/prepare.py first, or pass the folder that "
                        f"holds {name}/{split}.txt")
    payload = path.read_bytes()
    if not git_blob_hash(payload).startswith(_blobs(name)[split]):
        raise DataError(f"{path}: checksum mismatch; this is not the standard {name} {split} split")
    return [line.strip() for line in payload.decode("utf-8").splitlines() if line.strip()]


def build(source: Path, train_per_class: int, test_per_class: int) -> dict[str, list[str]]:
    """split -> labelled lines."""
    coco_train = _verified_lines(source, "image_coco", "train")
    coco_test = _verified_lines(source, "image_coco", "test")
    news = _verified_lines(source, "emnlp_news", "test")
    if train_per_class + test_per_class > len(news):
        raise DataError(f"--train-per-class + --test-per-class = {train_per_class + test_per_class} exceeds the "
                        f"{len(news)} EMNLP test sentences that both news splits come from")
    classes = {"coco": (coco_train[:train_per_class], coco_test[:test_per_class]),
               "news": (news[:train_per_class], news[len(news) - test_per_class:])}
    # lines alternate between the classes: sequential batches (mle.shuffle: false, the official order) mix them
    return {split: [f"{label}\t{pair[i]}" for pair in zip(classes["coco"][index], classes["news"][index], strict=True)
                    for i, label in enumerate(classes)]
            for index, split in enumerate(("train", "test"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare data/conditional_coco_emnlp/{train,test}.txt")
    parser.add_argument("--source", default=str(DATA),
                        help="folder holding image_coco/ and emnlp_news/ (default data/)")
    parser.add_argument("--out", default=str(DATA / "conditional_coco_emnlp"), help="output folder")
    parser.add_argument("--train-per-class", type=int, default=8000)
    parser.add_argument("--test-per-class", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        splits = build(Path(args.source), args.train_per_class, args.test_per_class)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split, lines in splits.items():
        target = Path(args.out) / f"{split}.txt"
        atomic_write_text(target, "\n".join(lines) + "\n")
        print(f"wrote {target}: {len(lines)} labelled lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
