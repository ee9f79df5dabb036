"""The evaluate and help commands on real inputs."""

import json
import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from relgan.cli import main
from relgan.metrics.embedding import fed_available
from relgan.tokenization import reference_words

from conftest import REPO, run_clis


def test_help_describes_commands_options_and_config_keys(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert all(command in text for command in ("train", "sample", "evaluate"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--config", "--resume", "--resume-from", "--overwrite", "--dry-run", "--debug",
                   "adversarial.steps (", "gumbel.schedule (no|lin|exp|log|sigmoid|quad|sqrt|learned"):
        assert option in text


@pytest.mark.slow
def test_the_installed_entry_points_print_help():
    result, wrapper = run_clis([["--help"], (["--help"], "train")], cwd=REPO)
    assert result.returncode == 0 and "evaluate" in result.stdout
    assert wrapper.returncode == 0 and "--dry-run" in wrapper.stdout


@pytest.mark.slow
def test_decoding_sweep_scores_each_rule_and_a_truncated_nll_is_infinite(smoke_run, tmp_path, capsys):
    out = tmp_path / "curve.json"
    assert main(["evaluate", "--run", str(smoke_run), "--decoding-sweep", "1.0,k=1,p=0.9", "--num-samples", "64",
                 "--device", "cpu", "--out", str(out)]) == 0
    points = json.loads(out.read_text())["points"]
    assert [(p["decoding"], p["temperature"], p["top_k"], p["top_p"]) for p in points] == [
        ("T=1", 1.0, 0, 1.0), ("top-k 1", 1.0, 1, 1.0), ("top-p 0.9", 1.0, 0, 0.9)]
    last = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert points[0]["nll_test"] == pytest.approx(last["nll_test"], rel=1e-9)
    assert points[1]["nll_test"] == math.inf  # greedy decoding gives every other test token probability 0
    assert points[1]["nll_oracle"] > 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(smoke_run), "--decoding-sweep", "1.0,q=2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--decoding-sweep: 'q=2' is not a decoding rule" in err


@pytest.mark.slow
def test_evaluate_text_files(tmp_path):
    samples = ["a man rides a horse .", "a dog on a beach", "a man rides a horse .", "two cats"]
    references = ["a man is riding a horse .", "a dog runs on the beach .", "cats sleep on a sofa ."]
    (tmp_path / "s.txt").write_text("\n".join(samples) + "\n")
    (tmp_path / "r.txt").write_text("\n".join(references) + "\n")
    (tmp_path / "t.txt").write_text("a dog on a beach\n")
    out = tmp_path / "report.json"
    assert main(["evaluate", "--samples", str(tmp_path / "s.txt"), "--references", str(tmp_path / "r.txt"),
                 "--train", str(tmp_path / "t.txt"), "--protocol", "full", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    refs = [reference_words(r) for r in references]
    for n in (2, 3, 4, 5):
        scores = [sentence_bleu(refs, reference_words(s), weights=(1 / n,) * n,
                                smoothing_function=SmoothingFunction().method1) for s in samples]
        assert report[f"bleu-{n}"] == pytest.approx(sum(scores) / len(scores), abs=1e-15)
    assert report["self-bleu-4"] > 0 and report["self_bleu_samples"] == 4
    assert report["novelty"] == pytest.approx(0.75) and report["unique_fraction"] == pytest.approx(0.75)
    assert report["protocol"] == "full" and report["num_samples"] == 4
    assert math.isfinite(report["lm_score"]) and math.isfinite(report["reverse_lm_score"])
    assert report["lm_judge"].startswith("LSTM")
    if fed_available():
        assert 0 <= report["mauve"] <= 1


def test_evaluate_files_asks_for_training_text_for_the_lm_judges(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("a dog\n")
    (tmp_path / "r.txt").write_text("a cat\n")
    code = main(["evaluate", "--samples", str(tmp_path / "s.txt"), "--references", str(tmp_path / "r.txt"),
                 "--metrics", "bleu,lm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--train" in err[0]


@pytest.mark.slow
def test_evaluate_run_matches_what_training_logged(smoke_run, tmp_path):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--run", str(smoke_run), "--num-samples", "64", "--device", "cpu",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    last = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()][-1]
    # same final weights, seed, sample count and batch size as the last evaluation during training
    for key in ("nll_oracle", "nll_gen", "nll_test"):
        assert report[key] == pytest.approx(last[key], rel=1e-9), key
    assert "bleu-2" not in report  # the oracle benchmark has no text references


@pytest.mark.slow
def test_temperature_sweep_writes_a_curve(smoke_run, tmp_path):
    out = tmp_path / "curve.json"
    assert main(["evaluate", "--run", str(smoke_run), "--temperature-sweep", "0.5,1.0,2.0", "--num-samples", "64",
                 "--device", "cpu", "--out", str(out)]) == 0
    curve = json.loads(out.read_text())
    nll = [point["nll_test"] for point in curve["points"]]
    assert [point["temperature"] for point in curve["points"]] == [0.5, 1.0, 2.0]
    last = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert nll[1] == pytest.approx(last["nll_test"], rel=1e-9)
    assert all(math.isfinite(value) for value in nll) and len(set(nll)) == 3
