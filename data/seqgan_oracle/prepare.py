"""SeqGAN's fixed synthetic oracle (its "target LSTM"): the 15 weight arrays into data/seqgan_oracle/, each checked
against its git blob hash before any is written.

python data/seqgan_oracle/prepare.py --source DIR
    DIR: a folder holding embedding.npz, wi.npz, ... bo.npz (pclucas14/GansFallingShort @ e6be915b1aed,
    synthetic_data_experiments/oracle_params/; bit-identical to LantaoYu/SeqGAN's save/target_params_py3.pkl)

Then train with data.oracle.params=data/seqgan_oracle (configs/seqgan_len20.yaml and its overrides).
"""

import argparse
import sys
from pathlib import Path

from relgan.errors import DataError
from relgan.seqgan_oracle import copy_verified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="folder of the 15 arrays (embedding.npz, wi.npz, ...)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent), help="default data/seqgan_oracle")
    args = parser.parse_args(argv)
    try:
        for line in copy_verified(Path(args.source), Path(args.out)):
            print(line)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
