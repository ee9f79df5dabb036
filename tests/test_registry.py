"""The metric registry: one table of names, directions and functions; signatures on every value; no mixing of
values computed differently; backward BLEU against nltk."""

import json

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from relgan.cli import main
from relgan.compare import aggregate, shared_signatures
from relgan.config import METRIC_NAMES
from relgan.errors import RelganError
from relgan.evaluation import TextEvaluator
from relgan.metrics.registry import METRICS, UNSIGNED, VERSION, metric_names
from relgan.plugins import catalogue

from conftest import SMOKE


def test_the_config_the_cli_and_the_reports_read_one_table(capsys):
    assert catalogue().choices(METRIC_NAMES) == metric_names() == tuple(METRICS)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert all(f"  {name}" in shown.split("eval.metrics:")[-1] for name in METRICS)


def _sentences(rng, count):
    words = "a man rides a horse on the beach dog runs in park with ball".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(count)]


def test_backward_bleu_equals_nltk_with_the_samples_as_references():
    import random

    rng = random.Random(0)
    samples, references = _sentences(rng, 40), _sentences(rng, 30)
    report = TextEvaluator(references, "full", [2, 3])(samples, ["bleu", "bw_bleu"])
    smooth = SmoothingFunction().method1
    for n in (2, 3):
        expected = [sentence_bleu([s.split() for s in samples], r.split(), (1 / n,) * n, smoothing_function=smooth)
                    for r in references]
        assert report[f"bw-bleu-{n}"] == pytest.approx(sum(expected) / len(expected), rel=1e-12)
        fw, bw = report[f"bleu-{n}"], report[f"bw-bleu-{n}"]
        assert report[f"fw-bw-bleu-{n}"] == pytest.approx(2 * fw * bw / (fw + bw))
    assert report["bw_bleu_hypotheses"] == 30 and report["bw_bleu_references"] == 40
    signature = report["signatures"]["bw_bleu"]
    assert signature == f"bw_bleu|proto:full|hyp:30|ref:40|tok:nltk|smooth:method1|v:{VERSION}"


@pytest.mark.slow
def test_every_evaluation_signs_each_metric(tmp_path, capsys):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=s", "mle.epochs=1",
                 "adversarial.steps=2"]) == 0
    records = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r["phase"] != "reference"]
    assert all(set(r["signatures"]) == {"nll_gen", "nll_test", "nll_oracle"} for r in evaluations)
    assert evaluations[0]["signatures"]["nll_oracle"] == (
        f"nll_oracle|oracle-seed:7|V:50|T:8|n:64|v:{VERSION}")
    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(tmp_path / "s"), "--metrics", "nll_test", "--out", str(out)]) == 0
    signature = json.loads(out.read_text())["signatures"]["nll_test"]
    assert signature.startswith("nll_test|conv:test-eos-no-padding|")
    shown = capsys.readouterr().out.splitlines()  # on the screen too, under the values (as sacreBLEU does)
    assert shown[shown.index("signatures:") + 1].split() == ["nll_test", signature]


def test_values_computed_differently_are_not_put_together():
    a = {"bleu-4": 0.3, "signatures": {"bleu": "bleu|proto:relgan|hyp:200|ref:10000|tok:nltk|v:0.2.0"}}
    b = {"bleu-4": 0.4, "signatures": {"bleu": "bleu|proto:full|hyp:5000|ref:10000|tok:nltk|v:0.2.0"}}
    assert aggregate([a, dict(a)])["bleu-4"]["n"] == 2
    with pytest.raises(RelganError, match=r"bleu was computed two ways, bleu.proto:relgan.* and bleu.proto:full"):
        aggregate([a, b])
    old = {"bleu-4": 0.3}  # a record written before signatures
    assert shared_signatures([old, old], "old runs") == {"*": UNSIGNED}
    with pytest.raises(RelganError, match="signed and unsigned records"):
        aggregate([a, old])
