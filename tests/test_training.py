"""End-to-end runs of the smoke config through the CLI: run directory, sampling, resume, interruption."""

import functools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from relgan.checkpoint import complete_checkpoints, verify_checkpoint
from relgan.cli import main
from relgan.tokenization import load_tokenizer

from conftest import REPO, SMOKE, SMOKE_TEXT, run_cli

LONGER = ["adversarial.steps=60", "adversarial.eval_every=30", "adversarial.checkpoint_every=5"]


def _weights(run_dir):
    """Generator and discriminator weights of a finished run."""
    last = complete_checkpoints(run_dir)[-1]
    return load_file(str(run_dir / "generator" / "model.safetensors")), load_file(str(last / "model_1.safetensors"))


def _assert_same_weights(a, b):
    for left, right in zip(_weights(a), _weights(b), strict=True):
        assert left.keys() == right.keys()
        for key in left:
            assert torch.equal(left[key], right[key]), key


class Pending:
    """A run started in a background process: its directory once it has finished (``finished``)."""

    def __init__(self, args: list[str], run_dir) -> None:
        self.run_dir = run_dir
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-m", "relgan", *args], cwd=REPO, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    @functools.cached_property
    def finished(self):
        _, stderr = self.process.communicate(timeout=300)
        assert self.process.returncode == 0, stderr
        return self.run_dir


# pytest-xdist (--dist loadgroup) keeps this file on one worker, so the module fixture below is made once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of the longer smoke config, trained beside the interrupted runs that read it."""
    out = tmp_path_factory.mktemp("reference")
    return Pending(["train", "--config", str(SMOKE), f"run.output_dir={out}", "run.name=ref", *LONGER], out / "ref")


@pytest.mark.slow
def test_smoke_run_directory_metrics_and_samples(tmp_path, capsys):
    result = run_cli("train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "NLL_ORACLE: after MLE:" in result.stdout and "samples:" in result.stdout
    run = tmp_path / "smoke"
    for name in ("config.yaml", "model.json", "oracle.safetensors", "tokenizer/tokenizer.json", "metrics.jsonl",
                 "generator/model.safetensors", "generator/manifest.json"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in records] == [
        ("reference", 0), ("mle", 1), ("mle", 2), ("adversarial", 3), ("adversarial", 6)]
    adversarial = records[-1]
    for key in ("beta", "g_loss", "d_loss", "nll_oracle", "nll_gen", "nll_test", "global_step"):
        assert isinstance(adversarial[key], float | int), key
    assert adversarial["beta"] == pytest.approx(10 ** (5 / 6))  # iteration 6 of 6 uses beta(5), N = 6
    checkpoints = complete_checkpoints(run)
    assert len(checkpoints) == 3  # run.keep_checkpoints
    for checkpoint in checkpoints:
        verify_checkpoint(checkpoint)

    vocabulary = set(load_tokenizer(run / "tokenizer").get_vocab())
    out = tmp_path / "samples.txt"
    assert main(["sample", "--run", str(run), "--num", "20", "--seed", "5", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 20 and all(word in vocabulary for line in lines for word in line.split())
    assert main(["sample", "--run", str(run), "--num", "20", "--seed", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == lines

    # a checkpoint reproduces the samples the training process drew at that step (same seed, batch size)
    last = checkpoints[-1]
    assert json.loads((last / "trainer_state.json").read_text())["progress"]["adv_step"] == 6
    assert main(["sample", "--run", str(run), "--checkpoint", str(last), "--num", "64", "--out", str(out)]) == 0
    assert out.read_text() == (run / "samples" / "adversarial-000006.txt").read_text()


@pytest.mark.slow
def test_dry_run_prints_sizes_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["vocab_size"], summary["seq_len"]) == (50, 8)
    # by hand, V=50, E=8, F=2*16, qkv 2*48: 400 + (256+32) + (3072+192) + 64 + 2*(1024+32) + 64 + 2*2048 + (1600+50)
    assert summary["generator_parameters"] == 11938
    # 50*8 embedding, convolutions (2+1)*16 + (3+1)*16, highway 2*32*32, hidden 32*16+16, logit 16+1
    assert summary["discriminator_parameters"] == 3105
    assert not (tmp_path / "smoke").exists()


@pytest.mark.slow
def test_sigint_writes_a_checkpoint_and_resume_is_bitwise_identical(tmp_path, reference_run):
    command = [sys.executable, "-m", "relgan", "train", "--config", str(SMOKE), f"run.output_dir={tmp_path}",
               "run.name=cut", *LONGER]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(tmp_path / "cut", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted: stopped by SIGINT" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "cut" / "generator").exists()
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=cut", *LONGER,
                 "--resume"]) == 0
    _assert_same_weights(reference_run.finished, tmp_path / "cut")
    same = [(json.loads(a)["global_step"], json.loads(a).get("nll_oracle")) for a in
            (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    expected = [(json.loads(a)["global_step"], json.loads(a).get("nll_oracle")) for a in
                (reference_run.finished / "metrics.jsonl").read_text().splitlines()]
    assert same == expected


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume(tmp_path, reference_run):
    command = [sys.executable, "-m", "relgan", "train", "--config", str(SMOKE), f"run.output_dir={tmp_path}",
               "run.name=killed", *LONGER]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(tmp_path / "killed", process)
    time.sleep(random.Random().uniform(0.0, 1.5))
    process.kill()
    process.wait(timeout=60)
    assert complete_checkpoints(tmp_path / "killed")
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=killed", *LONGER,
                 "--resume"]) == 0
    _assert_same_weights(reference_run.finished, tmp_path / "killed")


def _wait_for_checkpoint(run_dir, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if complete_checkpoints(run_dir):
            return
        assert process.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_learned_beta_and_bf16_autocast_train_on_cpu(tmp_path):
    """One adversarial iteration: Adam's first step moves rho = log(beta) by the learning rate (m / sqrt(v) =
    +-1), so the D steps use beta = exp(+-0.05)."""
    from relgan.assembly import setup
    from relgan.plugins import load_config

    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "gumbel.schedule=learned", "adversarial.steps=1",
                                 "adversarial.g_lr=0.05", "run.mixed_precision=bf16", "mle.epochs=1"])
    trainer = setup(config)
    reports = trainer.fit()
    assert abs(math.log(reports["adversarial"]["beta"])) == pytest.approx(0.05, rel=1e-3)
    assert trainer.beta_module().item() == pytest.approx(reports["adversarial"]["beta"], rel=1e-6)
    assert all(torch.isfinite(p).all() for p in trainer.gen.parameters())


@pytest.mark.slow
def test_learned_beta_is_read_anew_by_every_generator_step(tmp_path):
    """Two G steps per iteration: each step's graph has its own beta (no backward through a freed graph), and
    the D steps use the beta after both updates."""
    from relgan.assembly import setup
    from relgan.plugins import load_config

    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "gumbel.schedule=learned", "adversarial.steps=2",
                                 "adversarial.g_steps=2", "adversarial.g_lr=0.05", "mle.epochs=1"])
    trainer = setup(config)
    betas = []
    generator_update = trainer.generator_update
    trainer.generator_update = lambda step, scheduled: (betas.append(trainer._beta(scheduled).item()),
                                                        generator_update(step, scheduled))[1]
    reports = trainer.fit()
    assert len(betas) == 4 and len(set(betas)) == 4  # every G step saw the beta the step before left
    assert reports["adversarial"]["beta"] == pytest.approx(trainer.beta_module().item())
    assert reports["adversarial"]["beta"] != pytest.approx(betas[-1])


@pytest.mark.slow
def test_resuming_text_data_with_another_vocabulary_is_refused(tmp_path, capsys):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("a b c d\nb c d e\nc d e f\nd e f g\n")
    test.write_text("a b c\n")
    args = ["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}",
            f"data.train_file={train}", f"data.test_file={test}", "mle.batch_size=2", "adversarial.batch_size=2",
            "discriminator.filter_sizes=2", "eval.metrics=[bleu]", "eval.num_samples=4", "adversarial.steps=2"]
    assert main(args) == 0
    train.write_text("x y z w\ny z w v\nz w v u\nw v u t\n")
    shutil.rmtree(tmp_path / "smoke_text" / "generator")  # as if killed before its export: there is work left
    assert main([*args, "--resume"]) == 2
    assert "the run was trained with another vocabulary" in capsys.readouterr().err


def test_mle_loss_includes_the_padding_positions(tmp_path):
    """RelGAN's convention: the mean NLL over all T positions of every row, padding after the first <eos>
    included (the generator is made to favour <eos>, so that masking the padding would change the mean)."""
    from relgan.assembly import setup
    from relgan.plugins import load_config

    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("a b c d e\nb c\nc d e\nd\n" * 4)
    test.write_text("a b c\n")
    config = load_config(SMOKE_TEXT, [f"data.train_file={train}", f"data.test_file={test}", "mle.batch_size=8",
                                      "adversarial.batch_size=8", "discriminator.filter_sizes=2",
                                      f"run.output_dir={tmp_path}"])
    trainer = setup(config, write=False)
    batch, eos = trainer.corpus.train_ids[:8], trainer.corpus.eos_id
    with torch.no_grad():
        trainer.gen.output.bias[eos] += 3.0
        nll = trainer.gen.token_nll(batch)
    is_eos = (batch == eos).long()
    padding = (is_eos.cumsum(1) - is_eos) > 0
    assert padding.any() and (~padding).any()
    loss, _ = trainer._mle_step(batch)
    assert loss.item() == pytest.approx(nll.mean().item(), rel=1e-5)
    assert abs(nll.mean() - nll[~padding].mean()) > 0.1
