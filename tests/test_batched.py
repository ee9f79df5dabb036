"""run.replicas=batched: K replicas in lockstep, each step one vmapped pass of the reference models; each replica
equals its separate run with run.backend=reference up to the rounding of batched products."""

import json
import math
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from test_conditional import _labelled_files

import relgan.models.generator as generator_module
from relgan.batched import BatchedReplicas
from relgan.bookkeeping import RunBook
from relgan.checkpoint import complete_checkpoints
from relgan.cli import main
from relgan.errors import ConfigError, NonFiniteLossError, TrainingInterrupted
from relgan.plugins import load_config
from relgan.replicas import SUMMARY_FILE, replica_mode, train_replicas

from conftest import REPO, SMOKE, SMOKE_TEXT

# products batched by vmap round differently from the separate runs' (observed: 2e-7 relative)
TOLERANCE = 1e-5
SHORT = ["mle.epochs=1", "adversarial.steps=4", "adversarial.eval_every=2", "adversarial.checkpoint_every=2"]
LONGER = ["adversarial.steps=12", "adversarial.eval_every=6", "adversarial.checkpoint_every=2"]


def _records(run):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _generator(run):
    return load_file(str(run / "generator" / "model.safetensors"))


def _assert_close(left, right, where):
    """Equal nests of records, floats within TOLERANCE."""
    if isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            _assert_close(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, list):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _assert_close(a, b, f"{where}[{index}]")
    elif isinstance(left, float):
        assert left == pytest.approx(right, rel=TOLERANCE, abs=TOLERANCE), where
    else:
        assert left == right, where


def _assert_close_runs(batched, separate):
    _assert_close(_records(batched), _records(separate), "metrics.jsonl")
    weights, expected = _generator(batched), _generator(separate)
    assert weights.keys() == expected.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], expected[name], rtol=TOLERANCE, atol=TOLERANCE)
    for sample in sorted((batched / "samples").iterdir()):
        assert sample.read_text() == (separate / "samples" / sample.name).read_text()


VARIANTS = {
    "rmc, dropout, rsgan, 2 D steps": [],
    "lstm, learned beta, straight-through, 2 G steps, standard loss, no dropout": [
        "generator.architecture=lstm", "generator.hidden_size=16", "gumbel.schedule=learned",
        "gumbel.straight_through=true", "adversarial.g_steps=2", "adversarial.loss=standard",
        "discriminator.dropout=0"],
    "conditional on two classes": ["conditional"],
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batched_replicas_equal_separate_reference_runs(tmp_path, variant):
    overrides = [*SHORT, f"run.output_dir={tmp_path}"] + [o for o in VARIANTS[variant] if o != "conditional"]
    config = SMOKE
    if "conditional" in VARIANTS[variant]:
        files = _labelled_files(tmp_path)
        config = SMOKE_TEXT
        overrides += [f"data.train_file={files['train']}", f"data.test_file={files['test']}", "data.labelled=true"]
    assert main(["train", "--config", str(config), *overrides, "run.name=two", "run.seeds=[3,5]",
                 "run.replicas=batched"]) == 0
    for seed in (3, 5):
        assert main(["train", "--config", str(config), *overrides, f"run.name=alone{seed}", f"run.seed={seed}",
                     "run.backend=reference"]) == 0
        _assert_close_runs(tmp_path / "two" / f"seed-{seed}", tmp_path / f"alone{seed}")
        saved = load_config(tmp_path / "two" / f"seed-{seed}" / "config.yaml")
        assert (saved.run.seed, saved.run.backend) == (seed, "reference")  # the run each replica equals
    assert _records(tmp_path / "two" / "seed-3") != _records(tmp_path / "two" / "seed-5")


# pytest-xdist (--dist loadgroup) keeps this file on one worker, so the module fixture below is made once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def batched_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("batched")
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={out}", "run.name=two", "run.seeds=[3,5]",
                 "run.replicas=batched", *LONGER]) == 0
    return out


@pytest.mark.slow
def test_a_batched_replica_samples_and_evaluates_like_a_single_run(batched_run, capsys):
    replica = batched_run / "two" / "seed-5"
    capsys.readouterr()
    assert main(["sample", "--run", str(replica), "--num", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    out = batched_run / "eval.json"
    assert main(["evaluate", "--run", str(replica), "--metrics", "nll_oracle", "--num-samples", "32",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["nll_oracle"] > 0
    summary = json.loads((batched_run / "two" / SUMMARY_FILE).read_text())
    assert summary["metrics"]["nll_oracle"]["n"] == 2


@pytest.mark.slow
def test_batched_resume_after_sigkill_ends_where_the_uninterrupted_run_ends(tmp_path, batched_run):
    command = [sys.executable, "-m", "relgan", "train", "--config", str(SMOKE), f"run.output_dir={tmp_path}",
               "run.name=two", "run.seeds=[3,5]", "run.replicas=batched", *LONGER]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    seed_3 = tmp_path / "two" / "seed-3"
    while len(complete_checkpoints(seed_3)) < 2:  # the MLE phase is done
        assert process.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.02)
    time.sleep(random.Random().uniform(0.0, 0.3))
    process.kill()
    process.wait(timeout=60)
    assert not (tmp_path / "two" / "seed-5" / "generator").exists(), "killed too late: the run had finished"
    assert main([*command[3:], "--resume"]) == 0  # the resumption itself need not be another process
    for seed in (3, 5):
        left = _generator(tmp_path / "two" / f"seed-{seed}")
        right = _generator(batched_run / "two" / f"seed-{seed}")
        assert all(torch.equal(left[k], right[k]) for k in left)
        assert _records(tmp_path / "two" / f"seed-{seed}") == _records(batched_run / "two" / f"seed-{seed}")


@pytest.mark.slow
def test_a_nan_in_one_batched_replica_stops_the_run_naming_the_replica(tmp_path, monkeypatch):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.name=two", "run.seeds=[3,5]",
                                 "run.replicas=batched", "adversarial.steps=4", "run.log_every=2"])
    fake_batches, calls = BatchedReplicas.fake_batches, []

    def poisoned(self, beta, samples, count):
        calls.append(count)
        if len(calls) == 2:  # the second iteration's D-step fakes of seed 5 (samples stacked [K, ...])
            samples.noise[1].fill_(math.nan)
        return fake_batches(self, beta, samples, count)

    monkeypatch.setattr(BatchedReplicas, "fake_batches", poisoned)
    with pytest.raises(NonFiniteLossError) as info:
        train_replicas(config)
    assert str(info.value).startswith(f"replica seed 5 ({tmp_path / 'two' / 'seed-5'}): non-finite d_loss = nan "
                                      "in the adversarial phase at step 2")
    assert not (tmp_path / "two" / SUMMARY_FILE).exists()


@pytest.mark.slow
def test_a_stop_signal_checkpoints_every_batched_replica_at_the_same_step(tmp_path, monkeypatch):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.name=two", "run.seeds=[3,5]",
                                 "run.replicas=batched", "adversarial.steps=4"])
    check_stop = RunBook._check_stop

    def signalled(self):
        if self.run_dir.name == "seed-5" and self.progress.adv_step == 2:  # after seed 3 had checked
            self.stop.received = signal.SIGTERM
        check_stop(self)

    monkeypatch.setattr(RunBook, "_check_stop", signalled)
    with pytest.raises(TrainingInterrupted):
        train_replicas(config)
    for seed in (3, 5):
        state = json.loads((complete_checkpoints(tmp_path / "two" / f"seed-{seed}")[-1] / "trainer_state.json")
                           .read_text())
        assert state["progress"]["adv_step"] == 2


def test_a_model_drawing_its_own_noise_is_an_error_when_batched(tmp_path, monkeypatch):
    relaxed_sample = generator_module.relaxed_sample

    def drawing_inside(logits, beta, noise=None, *, hard=False):
        return relaxed_sample(logits, beta, None, hard=hard)

    monkeypatch.setattr(generator_module, "relaxed_sample", drawing_inside)
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.name=two", "run.seeds=[3,5]",
                                 "run.replicas=batched", "mle.epochs=0", "adversarial.steps=1"])
    with pytest.raises(ConfigError, match="the models draw random numbers inside a training step"):
        train_replicas(config)


def test_how_replicas_train_is_chosen_and_checked():
    seeds = ["run.seeds=[1,2]"]
    assert replica_mode(load_config(SMOKE, seeds))[0] == "sequential"  # auto on CPU: the C++ kernels
    assert replica_mode(load_config(SMOKE, [*seeds, "run.replicas=batched"]))[0] == "batched"
    mode, reason = replica_mode(load_config(SMOKE, [*seeds, "run.mixed_precision=bf16"]))
    assert mode == "sequential" and "mixed_precision" in reason
    with pytest.raises(ConfigError, match=re.escape("run.replicas=batched: the penalty of adversarial.loss=wgan-gp")):
        replica_mode(load_config(SMOKE, [*seeds, "run.replicas=batched", "adversarial.loss=wgan-gp"]))
    with pytest.raises(ConfigError, match=re.escape("run.replicas=batched: batched replicas run the reference models")):
        replica_mode(load_config(SMOKE, [*seeds, "run.replicas=batched", "run.backend=fast"]))
    with pytest.raises(ConfigError, match=re.escape("run.replicas")):
        load_config(SMOKE, ["run.replicas=batched"])  # no run.seeds: the setting would have no effect
