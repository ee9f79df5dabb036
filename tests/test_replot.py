"""experiments.reproduce's plots: which points a results table draws, and the replot command's bad input."""

import json
import re

import pytest

from experiments import reproduce
from experiments.replot import main as replot
from relgan.decoding import Decoding
from relgan.errors import RelganError


def _row(model: str, row: str, bleu: float, self_bleu: float) -> dict:
    return {"model": model, "row": row, "seed": 1, "full/bleu-4": bleu, "full/self-bleu-4": self_bleu,
            "bleu-4": bleu + 0.1, "self-bleu-4": self_bleu + 0.1, "signatures": {}}


def test_a_results_table_draws_its_gan_rows_and_real_text_not_the_mle_row(monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(reproduce, "plot_planes", lambda sweep, gans, planes, prefix, title, real, others: drawn.update(
        sweep=sweep, gans=gans, real=real, prefix=prefix, others=others) or [])
    rows = [_row("MLE", "last", 0.31, 0.49), _row("RelGAN(100)", "last", 0.33, 0.53),
            _row(reproduce.REAL, "held out", 0.334, 0.417)]
    result = {"name": "t", "synthetic": False, "seeds": [1], "rows": rows,
              "sweep": [{"temperature": 1.0, "metrics": {"bleu-4": {"mean": 0.31, "ci95": None}}}],
              "reranked": {"points": {"reranked alpha=1": {"bleu-4": {"mean": 0.32, "ci95": None}}}}}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(result))
    replot([str(path)])
    assert list(drawn["gans"]) == ["RelGAN(100), last"]
    assert drawn["gans"]["RelGAN(100), last"]["bleu-4"]["mean"] == pytest.approx(0.33)  # the full protocol's
    assert drawn["real"]["bleu-4"]["mean"] == pytest.approx(0.334)
    assert drawn["real"]["self-bleu-4"]["mean"] == pytest.approx(0.417)
    # a table written before decoding rules (its sweep by temperature) draws its temperatures as rules
    assert list(drawn["sweep"]) == [Decoding(1.0)] and drawn["prefix"].name == "t"
    assert list(drawn["others"]) == ["reranked alpha=1"]  # MLE reranked by a discriminator, on its own curve


def test_replot_refuses_a_file_that_is_not_a_results_table(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"name": "t"}))
    with pytest.raises(RelganError, match=re.escape("not written by experiments.reproduce")):
        replot([str(path)])
    with pytest.raises(RelganError, match="cannot read it"):
        replot([str(tmp_path / "absent.json")])
