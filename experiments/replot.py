"""Redraw a reproduction table's plane plots from its results JSON, without training or judging again.

python -m experiments.replot results/coco-cpu-reduced.json [more.json ...]

Writes results/<name>-<plane>.png as experiments.reproduce draws them (the MLE curve of each family of decoding
rules, the GAN rows, real text) and prints their paths; for tables written before a change to the plots.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.entry import run
from experiments.reproduce import draw
from relgan.errors import RelganError


def replot(path: Path) -> list[Path]:
    """The plots of one results/<name>.json written by experiments.reproduce."""
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RelganError(f"{path}: cannot read it as a results JSON ({error})") from None
    missing = [key for key in ("name", "synthetic", "seeds", "rows", "sweep") if key not in result]
    if missing:
        raise RelganError(f"{path}: not written by experiments.reproduce (no {', '.join(missing)})")
    return draw(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results/<name>.json files")
    args = parser.parse_args(argv)
    for path in args.results:
        for plot in replot(path):
            print(plot)


if __name__ == "__main__":
    run(main)
