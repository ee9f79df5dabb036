"""Evaluate a run or text files: ``python evaluate.py --run runs/demo``. Same as ``relgan evaluate``."""

from relgan.cli import evaluate_entry

if __name__ == "__main__":
    evaluate_entry()
