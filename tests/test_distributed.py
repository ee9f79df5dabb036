"""Two CPU processes (gloo) with different data: both networks must stay identical across ranks."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from relgan.algorithms import algorithm_class, registered

from conftest import REPO, SMOKE

# several processes; one worker of pytest-xdist (--dist loadgroup) makes the one launch below
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(__name__)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ALGORITHMS = [name for name in registered() if name != "relgan"]  # relgan: the rmc and transformer runs
COMMON = ["mle.epochs=1", "mle.batch_size=16", "adversarial.steps=4", "adversarial.batch_size=16"]


def _accelerate(*script_and_arguments: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` of a script on two CPU processes (gloo); it must succeed."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launcher not found")
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               *script_and_arguments]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _assert_identical_networks(run, real_batches_per_g_step):
    ranks = [json.loads(path.read_text()) for path in sorted(run.glob("result-rank*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1], run.name
    assert all(r["num_processes"] == 2 and r["distributed_type"].endswith("MULTI_CPU") for r in ranks)
    assert ranks[0]["generator"] == ranks[1]["generator"], run.name
    assert ranks[0]["discriminator"] == ranks[1]["discriminator"], run.name
    assert ranks[0]["learned"] == ranks[1]["learned"], run.name  # an estimator's control variate
    assert ranks[0]["mle_data"] != ranks[1]["mle_data"]
    assert ranks[0]["adversarial_data"] != ranks[1]["adversarial_data"]
    # 4 iterations of 1 G step and 2 D steps (REINFORCE's G step reads no real batch)
    assert ranks[0]["batches"] == {"mle": 8, "adversarial": 4 * (real_batches_per_g_step + 2)}, run.name


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """One launch of two processes trains every run the tests below read, in turn (tests/ddp_worker.py --then):
    the RMC and GPT-2 smoke runs with WGAN-GP, each algorithm, the seed-5 run the replicas are held against, a run
    with patience, and last the replicas of seeds 3 and 5 (through the command line; its stdout in stdout.txt)."""
    out = tmp_path_factory.mktemp("ddp")
    runs = [
        ["run.name=ddp-rmc", "adversarial.loss=wgan-gp"],
        [f"config={REPO / 'configs' / 'smoke_transformer.yaml'}", "run.name=ddp-transformer",
         "adversarial.loss=wgan-gp"],
        *([f"run.name=ddp-{name}", *algorithm_class(name).overrides(small=True)] for name in ALGORITHMS),
        ["run.name=alone", "run.seed=5"],
        ["run.name=ddp-patience", "data.validation_size=64", "mle.epochs=30", "mle.patience=2", "mle.lr=0.05",
         "adversarial.eval_every=1", "adversarial.patience=1"],
        ["via=cli", "run.name=two", "run.seeds=[3,5]"],  # replicas, through the command line as train.py runs
    ]
    result = _accelerate(str(REPO / "tests" / "ddp_worker.py"), str(SMOKE), f"run.output_dir={out}", *COMMON,
                         *(word for run in runs for word in ("--then", *run)))
    (out / "stdout.txt").write_text(result.stdout)
    return out


@pytest.mark.parametrize("model", ["rmc", "transformer"])
def test_two_processes_keep_both_networks_identical(ddp_runs, model):
    _assert_identical_networks(ddp_runs / f"ddp-{model}", 1)


def test_every_algorithm_keeps_both_networks_identical_on_two_processes(ddp_runs):
    for name in ALGORITHMS:  # a relaxed algorithm's G step reads a real batch (its loss compares), REINFORCE's none
        _assert_identical_networks(ddp_runs / f"ddp-{name}", int(algorithm_class(name).relaxed))


def test_replicas_on_two_processes_equal_the_two_process_run_of_their_seed(ddp_runs):
    from safetensors.torch import load_file

    assert (ddp_runs / "stdout.txt").read_text().count("seed summary in") == 1  # the main process reports
    replica = load_file(str(ddp_runs / "two" / "seed-5" / "generator" / "model.safetensors"))
    alone = load_file(str(ddp_runs / "alone" / "generator" / "model.safetensors"))  # ddp_worker, two processes
    assert all((replica[k] == alone[k]).all() for k in alone)
    assert (ddp_runs / "two" / "seeds.json").is_file()


def test_phases_with_patience_stop_together_on_two_processes(ddp_runs):
    """The main process decides (it evaluates); both ranks stop at its step and load the same best MLE weights."""
    run = ddp_runs / "ddp-patience"
    ranks = [json.loads(path.read_text()) for path in sorted(run.glob("result-rank*.json"))]
    assert ranks[0]["generator"] == ranks[1]["generator"] and ranks[0]["batches"] == ranks[1]["batches"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    restored = [r for r in records if r.get("restored_best")]
    assert len(restored) == 1 and restored[0]["stopped_at"] < 30
    assert ranks[0]["batches"]["mle"] == 6 * restored[0]["stopped_at"]  # 192 sentences, 16 per batch and rank
