"""run.seeds: K replicas in one process, each equal to its own run, each in its own run directory."""

import json
import random
import re
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import relgan.adversarial as adversarial
import relgan.algorithms.relgan as relgan_algorithm
from relgan.assembly import run_dir_of
from relgan.checkpoint import complete_checkpoints
from relgan.cli import main
from relgan.config import save_config
from relgan.errors import ConfigError, NonFiniteLossError
from relgan.plugins import load_config
from relgan.replicas import SUMMARY_FILE, replica_config, train_replicas

from conftest import REPO, SMOKE

LONGER = ["adversarial.steps=40", "adversarial.eval_every=20", "adversarial.checkpoint_every=5"]


def _records(run):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _generator(run):
    return load_file(str(run / "generator" / "model.safetensors"))


def _assert_same_run(a, b):
    assert _records(a) == _records(b)  # losses, gradient norms, every evaluation
    left, right = _generator(a), _generator(b)
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
    for sample in sorted((a / "samples").iterdir()):
        assert sample.read_text() == (b / "samples" / sample.name).read_text()


# pytest-xdist (--dist loadgroup) keeps this file on one worker, so the module fixture below is made once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def replicas_and_single(tmp_path_factory):
    """A K = 2 run of seeds 3 and 5 and a separate single run with seed 5."""
    out = tmp_path_factory.mktemp("replicas")
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={out}", "run.name=two", "run.seeds=[3,5]",
                 *LONGER]) == 0
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={out}", "run.name=alone", "run.seed=5",
                 *LONGER]) == 0
    return out


@pytest.mark.slow
def test_two_replicas_equal_two_separate_runs(replicas_and_single):
    out = replicas_and_single
    _assert_same_run(out / "two" / "seed-5", out / "alone")
    assert load_config(out / "two" / "seed-3" / "config.yaml").run.seed == 3
    assert _records(out / "two" / "seed-3") != _records(out / "two" / "seed-5")
    summary = json.loads((out / "two" / SUMMARY_FILE).read_text())
    values = [summary["per_seed"][s]["nll_oracle"] for s in ("3", "5")]
    assert summary["metrics"]["nll_oracle"]["mean"] == pytest.approx(sum(values) / 2)
    assert summary["metrics"]["nll_oracle"]["n"] == 2


@pytest.mark.slow
def test_each_replica_samples_and_evaluates_like_a_single_run(replicas_and_single, capsys):
    replica = replicas_and_single / "two" / "seed-3"
    capsys.readouterr()
    assert main(["sample", "--run", str(replica), "--num", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    out = replicas_and_single / "eval.json"
    assert main(["evaluate", "--run", str(replica), "--metrics", "nll_oracle", "--num-samples", "32",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["nll_oracle"] > 0


@pytest.mark.slow
def test_resume_after_sigkill_ends_where_the_uninterrupted_replicas_end(tmp_path, replicas_and_single):
    command = [sys.executable, "-m", "relgan", "train", "--config", str(SMOKE), f"run.output_dir={tmp_path}",
               "run.name=two", "run.seeds=[3,5]", *LONGER]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not complete_checkpoints(tmp_path / "two" / "seed-5"):  # kill it inside the second replica
        assert process.poll() is None and time.time() < deadline, "the run ended before seed 5's first checkpoint"
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 0.5))
    process.kill()
    process.wait(timeout=60)
    # written once when a replica starts: a replica continued (or finished) keeps it, one started over would not
    started = {seed: (tmp_path / "two" / f"seed-{seed}" / "oracle.safetensors").stat().st_mtime_ns for seed in (3, 5)}
    assert main([*command[3:], "--resume"]) == 0  # the resumption itself need not be another process
    assert started == {seed: (tmp_path / "two" / f"seed-{seed}" / "oracle.safetensors").stat().st_mtime_ns
                       for seed in (3, 5)}
    for seed in (3, 5):
        left = _generator(tmp_path / "two" / f"seed-{seed}")
        right = _generator(replicas_and_single / "two" / f"seed-{seed}")
        assert all(torch.equal(left[k], right[k]) for k in left)


@pytest.mark.slow
def test_a_nan_in_one_replica_stops_the_run_naming_the_replica(tmp_path, monkeypatch):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.name=two", "run.seeds=[3,5]",
                                 "adversarial.steps=4", "run.log_every=2"])
    healthy, calls = adversarial.gan_losses, []

    def poisoned(kind, d_real, d_fake):
        d_loss, g_loss = healthy(kind, d_real, d_fake)
        calls.append(1)
        # seed 3 makes 4 iterations of 1 G and 2 D losses; the 2nd replica's 2nd iteration is poisoned
        return (d_loss * float("nan"), g_loss) if len(calls) == 12 + 5 else (d_loss, g_loss)

    monkeypatch.setattr(adversarial, "gan_losses", poisoned)  # the D losses
    monkeypatch.setattr(relgan_algorithm, "gan_losses", poisoned)  # RelGAN's G losses
    with pytest.raises(NonFiniteLossError) as info:
        train_replicas(config)
    assert str(info.value).startswith(f"replica seed 5 ({tmp_path / 'two' / 'seed-5'}): non-finite d_loss = nan "
                                      "in the adversarial phase at step 2")
    assert (tmp_path / "two" / "seed-3" / "generator").is_dir()  # the first replica had finished
    assert not (tmp_path / "two" / SUMMARY_FILE).exists()


def test_seeds_must_be_distinct_and_replace_run_seed():
    with pytest.raises(ConfigError, match="each once"):
        load_config(SMOKE, ["run.seeds=[1,1]"])
    with pytest.raises(ConfigError, match=re.escape("run.seed = 7 has no effect with run.seeds")):
        load_config(None, ["run.seeds=[1,2]", "run.seed=7"])


def test_a_replica_config_saved_and_loaded_again_is_a_run_in_its_own_directory(tmp_path):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.name=two", "run.seeds=[3,5]"])
    replica = replica_config(config, 5)
    save_config(replica, tmp_path / "config.yaml")
    loaded = load_config(tmp_path / "config.yaml")
    assert run_dir_of(loaded) == tmp_path / "two" / "seed-5"
    assert (loaded.run.seed, loaded.run.seeds) == (5, None)
