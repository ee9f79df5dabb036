"""Recorded commands (experiments/commands.py) name no directory of the machine that ran them."""

import sys

import pytest

from experiments.commands import portable_command

from conftest import REPO


def test_a_recorded_command_writes_data_as_DATA_repo_paths_relative_and_other_paths_as_RUNS(tmp_path, monkeypatch):
    monkeypatch.setenv("RELGAN_SHARED_DATA", str(tmp_path / "shared"))
    words = ["python", "-m", "experiments.reproduce", "--config", str(REPO / "configs" / "demo.yaml"),
             "--output-dir", "/tmp/verdict_runs", f"data.train_file={tmp_path / 'shared' / 'image_coco/train.txt'}",
             "--note", "two words"]
    assert portable_command(words) == (
        "python -m experiments.reproduce --config configs/demo.yaml --output-dir $RUNS/verdict_runs "
        "data.train_file=$DATA/image_coco/train.txt --note 'two words'")


def test_no_committed_result_names_a_directory_of_the_machine_that_made_it():
    for path in sorted((REPO / "results").glob("*")):
        if path.suffix in (".md", ".json", ".jsonl"):
            text = path.read_text()
            assert not any(root in text for root in ("/work/", "/root/", "/tmp/", "/home/")), path.name


@pytest.mark.parametrize("module, argv, message", [
    ("reproduce", ["--config", str(REPO / "configs" / "smoke.yaml"), "--seeds", "a,b", "--name", "x"],
     "error: --seeds 'a,b': give comma-separated integers"),
    ("reproduce", ["--config", "nope.yaml", "--name", "x"], "error: nope.yaml: config file not found"),
    ("reproduce", ["--config", str(REPO / "configs" / "smoke.yaml"), "--decoding", "0.8,k=x", "--name", "x"],
     "error: --decoding: 'k=x' is not a decoding rule"),
    ("reproduce", ["--config", str(REPO / "configs" / "smoke.yaml"), "--num-samples", "64", "--rerank-candidates",
                   "10", "--name", "x"], "error: --rerank-candidates 10: resample from at least --num-samples (64)"),
    ("reproduce", ["--config", str(REPO / "configs" / "smoke.yaml"), "--tune-mle", "mle.lr=0.1,0.2", "--name", "x"],
     "error: --tune-mle gives 2 trials and --tune-gan 1: the same tuning effort for MLE and every GAN"),
    ("reproduce", ["--config", str(REPO / "configs" / "smoke.yaml"), "--tune-mle", "mle.lr", "--name", "x"],
     "error: --tune-mle 'mle.lr': give KEY=V1,V2"),
    ("reproduce", ["--config", str(REPO / "configs" / "smoke.yaml"), "--tune-gan-by", "validation-nll", "--name", "x"],
     "error: --tune-gan-by validation-nll: there are no GAN trials to choose among"),
    ("paper_seeds", ["--config", "nope.yaml", "--output-dir", "OUT"], "error: nope.yaml: config file not found"),
    ("conditional_table", ["--runs", "nope", "--out", "OUT", "--command", "x"],
     "error: --runs nope: no evaluation after MLE"),
    ("real_text_baselines", ["--data", "/nowhere"], "error: train split: file not found"),
    ("replot", ["nope.json"], "error: nope.json: cannot read it as a results JSON"),
])
def test_bad_input_to_an_experiments_driver_is_one_line(tmp_path, monkeypatch, module, argv, message):
    import importlib

    from experiments.entry import run

    driver = importlib.import_module(f"experiments.{module}")
    monkeypatch.setattr(sys, "argv", [module, *[str(tmp_path) if word == "OUT" else word for word in argv]])
    with pytest.raises(SystemExit) as exit_info:
        run(driver.main)
    text = str(exit_info.value.code)
    assert text.startswith(message) and "\n" not in text, text


@pytest.mark.parametrize("stop, code, start", [
    (KeyboardInterrupt(), 130, "interrupted: stopped by SIGINT outside training; every finished run"),
    ("train", 143, "interrupted: stopped by SIGTERM at step 7; checkpoint written to c"),
])
def test_a_stop_signal_in_an_experiments_driver_is_one_line_and_the_shells_exit_code(capsys, stop, code, start):
    import signal

    from experiments.entry import run
    from relgan.errors import TrainingInterrupted

    def main() -> None:
        if stop == "train":
            raise TrainingInterrupted("stopped by SIGTERM at step 7; checkpoint\nwritten to c", signal.SIGTERM)
        raise stop

    with pytest.raises(SystemExit) as exit_info:
        run(main)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1, err
