"""Model selection and early stopping: which evaluation of a phase is the best, read from the model-selection values
(``val/`` keys, data.validation_size) only, never from the test split nor the reported samples.

- MLE: the lowest validation NLL, the generator's NLL on held-out training sentences (``val/nll_test``).
- Adversarial, synthetic benchmark: the lowest NLL_oracle of an independent sample set (``val/nll_oracle``).
- Adversarial, real text: the largest BLEU-4 of an independent sample set against the held-out sentences minus its
  Self-BLEU-4 (quality not bought with diversity).

A phase with ``patience`` P > 0 stops after P evaluations in a row without a new best (its epochs or iterations
are then the most it may run); the MLE phase then goes back to its best evaluation's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RULES = {
    "mle": "lowest validation NLL (val/nll_test, the held-out training sentences)",
    "synthetic": "lowest NLL_oracle of an independent selection sample set (val/nll_oracle)",
    "text": "largest BLEU-4 of an independent selection sample set against the held-out training sentences minus "
    "its Self-BLEU-4 (val/bleu-4 - val/self-bleu-4)",
}


def rule(phase: str, synthetic: bool) -> str:
    """The selection rule of ``phase`` ("mle" or "adversarial"), in words."""
    return RULES["mle" if phase == "mle" else "synthetic" if synthetic else "text"]


def score(record: dict[str, Any], phase: str) -> float:
    """Higher is better: the selection value of one evaluation record of ``phase``."""
    if phase == "mle":
        return -record["val/nll_test"]
    if "val/nll_oracle" in record:
        return -record["val/nll_oracle"]
    return record["val/bleu-4"] - record["val/self-bleu-4"]


def best(records: Sequence[dict[str, Any]], phase: str) -> dict[str, Any]:
    """The best of a phase's evaluation records (the earliest on ties)."""
    return max(records, key=lambda r: score(r, phase))


def stalled(records: Sequence[dict[str, Any]], phase: str, patience: int) -> bool:
    """Whether the last ``patience`` evaluations of a phase (records in order) brought no new best."""
    scores = [score(r, phase) for r in records]
    return patience > 0 and len(scores) - 1 - scores.index(max(scores)) >= patience
