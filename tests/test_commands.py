"""Recorded commands (experiments/commands.py) name no directory of the machine that ran them."""

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
