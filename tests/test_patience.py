"""Converged budgets: a phase with patience stops when its model-selection value (relgan/selection.py) has not
improved for that many evaluations, and the MLE phase goes back to its best evaluation's weights."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from relgan import selection
from relgan.bookkeeping import BEST_MLE_FILE
from relgan.checkpoint import complete_checkpoints, read_trainer_state
from relgan.cli import main
from relgan.errors import ConfigError
from relgan.plugins import load_config
from relgan.replicas import replica_mode

from conftest import SMOKE

# an MLE phase that overfits 192 sentences at a high rate: the validation NLL turns after a few epochs
PATIENT_MLE = ["data.validation_size=64", "mle.epochs=30", "mle.patience=2", "mle.lr=0.05", "run.keep_checkpoints=40"]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _train(out, name, *overrides):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={out}", f"run.name={name}", *overrides]) == 0
    return out / name


def test_the_selection_values_and_the_stall_rule_by_hand():
    mle = [{"val/nll_test": v} for v in (3.0, 2.5, 2.6, 2.5)]
    assert selection.best(mle, "mle") is mle[1]  # the earliest of a tie
    assert not selection.stalled(mle[:3], "mle", 2) and selection.stalled(mle, "mle", 2)
    assert not selection.stalled(mle, "mle", 0)
    text = [{"val/bleu-4": 0.5, "val/self-bleu-4": 0.4}, {"val/bleu-4": 0.6, "val/self-bleu-4": 0.55}]
    assert selection.best(text, "adversarial") is text[0] and selection.stalled(text, "adversarial", 1)
    oracle = [{"val/nll_oracle": 3.0, "val/bleu-4": 0.9, "val/self-bleu-4": 0.0}, {"val/nll_oracle": 2.0}]
    assert selection.best(oracle, "adversarial") is oracle[1]


# pytest-xdist (--dist loadgroup) keeps this file on one worker, so the module fixture below is made once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def patient_run(tmp_path_factory):
    """An MLE run with patience, trained to its stop."""
    return _train(tmp_path_factory.mktemp("patience"), "mle", *PATIENT_MLE, "adversarial.steps=0")


@pytest.mark.slow
def test_mle_stops_after_patience_and_keeps_its_best_weights(patient_run):
    records = [r for r in _records(patient_run) if r["phase"] == "mle"]
    trained, restored = records[:-1], records[-1]
    values = [r["val/nll_test"] for r in trained]
    best = values.index(min(values))
    assert len(trained) == best + 3 < 30  # two evaluations without a lower value, then the stop
    assert restored["restored_best"] and restored["step"] == best + 1 and restored["stopped_at"] == len(trained)
    assert restored["val/nll_test"] == min(values)
    kept = load_file(str(patient_run / BEST_MLE_FILE))
    exported = load_file(str(patient_run / "generator" / "model.safetensors"))
    last = complete_checkpoints(patient_run)[-1]
    assert read_trainer_state(last)["progress"]["mle_stopped"]
    checkpointed = load_file(str(last / "model.safetensors"))
    for name, weight in kept.items():
        assert torch.equal(exported[name], weight) and torch.equal(checkpointed[name], weight), name
    trained_last = load_file(str(complete_checkpoints(patient_run)[-2] / "model.safetensors"))
    assert any(not torch.equal(trained_last[name], weight) for name, weight in kept.items())


@pytest.mark.slow
def test_a_resumed_patient_run_ends_as_the_uninterrupted_one(patient_run, tmp_path):
    """Resumed before its best epoch's evaluation (the kept weights are of an evaluation the resume redoes)."""
    copy = tmp_path / "mle"
    shutil.copytree(patient_run, copy)
    shutil.rmtree(copy / "generator")
    for checkpoint in complete_checkpoints(copy)[-4:]:
        shutil.rmtree(checkpoint)
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=mle", *PATIENT_MLE,
                 "adversarial.steps=0", "--resume"]) == 0
    assert _records(copy) == _records(patient_run)
    ours, theirs = (load_file(str(run / "generator" / "model.safetensors")) for run in (copy, patient_run))
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)


@pytest.mark.slow
def test_an_adversarial_phase_with_patience_stops_on_its_selection_value(patient_run, tmp_path):
    shutil.copytree(patient_run, tmp_path / "gan")
    shutil.rmtree(tmp_path / "gan" / "generator")
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=gan", *PATIENT_MLE,
                 "adversarial.steps=60", "adversarial.eval_every=2", "adversarial.patience=2", "--resume"]) == 0
    records = [r for r in _records(tmp_path / "gan") if r["phase"] == "adversarial"]
    values = [r["val/nll_oracle"] for r in records]
    assert len(records) == values.index(min(values)) + 3 and records[-1]["step"] < 60
    assert read_trainer_state(complete_checkpoints(tmp_path / "gan")[-1])["progress"]["adv_stopped"]


def test_batched_replicas_refuse_patience():
    config = load_config(SMOKE, ["run.seeds=[1, 2]", "run.replicas=batched", "data.validation_size=64",
                                 "mle.patience=2"])
    with pytest.raises(ConfigError, match="patience stops each replica at its own step"):
        replica_mode(config)
