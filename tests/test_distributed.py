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

pytestmark = pytest.mark.slow  # several processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ALGORITHMS = [name for name in registered() if name != "relgan"]  # relgan: the rmc and transformer runs


def _launch(tmp_path, config, *words):
    """``accelerate launch`` of tests/ddp_worker.py on two CPU processes (gloo)."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launcher not found")
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               str(REPO / "tests" / "ddp_worker.py"), str(config), f"run.output_dir={tmp_path}",
               "mle.epochs=1", "mle.batch_size=16", "adversarial.steps=4", "adversarial.batch_size=16", *words]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    assert result.returncode == 0, result.stderr[-3000:]


def _assert_identical_networks(run, real_batches_per_g_step):
    ranks = [json.loads(path.read_text()) for path in sorted(run.glob("result-rank*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1], run.name
    assert all(r["num_processes"] == 2 and r["distributed_type"].endswith("MULTI_CPU") for r in ranks)
    assert ranks[0]["generator"] == ranks[1]["generator"], run.name
    assert ranks[0]["discriminator"] == ranks[1]["discriminator"], run.name
    assert ranks[0]["mle_data"] != ranks[1]["mle_data"]
    assert ranks[0]["adversarial_data"] != ranks[1]["adversarial_data"]
    # 4 iterations of 1 G step and 2 D steps (REINFORCE's G step reads no real batch)
    assert ranks[0]["batches"] == {"mle": 8, "adversarial": 4 * (real_batches_per_g_step + 2)}, run.name


@pytest.mark.parametrize("config", [SMOKE, REPO / "configs" / "smoke_transformer.yaml"], ids=["rmc", "transformer"])
def test_two_processes_keep_both_networks_identical(tmp_path, config):
    _launch(tmp_path, config, "run.name=ddp", "adversarial.loss=wgan-gp")
    _assert_identical_networks(tmp_path / "ddp", 1)


def test_every_algorithm_keeps_both_networks_identical_on_two_processes(tmp_path):
    """One launch trains each algorithm in turn (tests/ddp_worker.py --then)."""
    runs = [word for name in ALGORITHMS
            for word in ("--then", f"run.name=ddp-{name}", *algorithm_class(name).overrides(small=True))]
    _launch(tmp_path, SMOKE, *runs)
    for name in ALGORITHMS:  # a relaxed algorithm's G step reads a real batch (its loss compares), REINFORCE's none
        _assert_identical_networks(tmp_path / f"ddp-{name}", int(algorithm_class(name).relaxed))


def test_replicas_on_two_processes_equal_the_two_process_run_of_their_seed(tmp_path):
    from safetensors.torch import load_file

    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launcher not found")
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    common = ["mle.epochs=1", "mle.batch_size=16", "adversarial.steps=4", "adversarial.batch_size=16",
              f"run.output_dir={tmp_path}"]
    for extra in (["run.name=two", "run.seeds=[3,5]"], ["run.name=alone", "run.seed=5"]):
        command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                   str(REPO / "train.py"), "--config", str(SMOKE), *common, *extra]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory") == 1  # the main process reports
    replica = load_file(str(tmp_path / "two" / "seed-5" / "generator" / "model.safetensors"))
    alone = load_file(str(tmp_path / "alone" / "generator" / "model.safetensors"))
    assert all((replica[k] == alone[k]).all() for k in alone)
    assert (tmp_path / "two" / "seeds.json").is_file()
