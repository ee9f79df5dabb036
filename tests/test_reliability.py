"""Numerical faults and long runs (in-process, smoke config)."""

import gc
import os

import pytest
import torch
from safetensors.torch import load_file

import relgan.adversarial as adversarial
from relgan.assembly import setup
from relgan.checkpoint import complete_checkpoints, verify_checkpoint
from relgan.errors import NonFiniteLossError
from relgan.plugins import load_config

from conftest import SMOKE


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "adversarial.steps=12", "adversarial.eval_every=12",
                                 "adversarial.checkpoint_every=3", "run.log_every=10"])
    trainer = setup(config)
    healthy = adversarial.gan_losses

    def poisoned(kind, d_real, d_fake):
        d_loss, g_loss = healthy(kind, d_real, d_fake)
        if trainer.progress.adv_step == 7:  # the 8th iteration
            return d_loss * float("nan"), g_loss
        return d_loss, g_loss

    monkeypatch.setattr(adversarial, "gan_losses", poisoned)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite d_loss = nan in the adversarial phase at step 8" in message
    run = tmp_path / "smoke"
    good = run / "checkpoints" / "step-00000022"  # 16 MLE batches + 6 adversarial iterations
    assert f"last good checkpoint: {good}" in message
    assert complete_checkpoints(run)[-1] == good  # the checkpoint due at iteration 9 was not written
    verify_checkpoint(good)
    assert all(torch.isfinite(t).all() for t in load_file(str(good / "model_1.safetensors")).values())
    assert not (run / "generator").exists()


def test_non_finite_weights_behind_finite_logs_stop_the_run_in_one_line_and_export_nothing(tmp_path, monkeypatch,
                                                                                           capsys):
    from relgan.cli import main
    from relgan.training import Trainer

    healthy = Trainer.generator_update

    def poisoned(self, step, scheduled_beta):
        values = healthy(self, step, scheduled_beta)
        if self.progress.adv_step == 4:  # the 5th iteration: a weight goes to -inf, every logged value stays finite
            with torch.no_grad():
                self.gen.output.bias[1] = -float("inf")
        return values

    monkeypatch.setattr(Trainer, "generator_update", poisoned)
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=nan", "mle.epochs=1",
                 "adversarial.steps=6", "adversarial.checkpoint_every=3", "adversarial.eval_every=6",
                 "run.backend=reference"]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    good = tmp_path / "nan" / "checkpoints" / "step-00000011"  # 8 MLE batches + 3 adversarial iterations
    assert err == [f"error: non-finite weights in the generator (output.bias) at step 14; training stopped; nothing "
                   f"exported; last good checkpoint: {good} (try a lower learning rate)"]
    assert complete_checkpoints(tmp_path / "nan")[-1] == good
    assert not (tmp_path / "nan" / "generator").exists()


@pytest.mark.slow
def test_a_gradient_norm_that_goes_non_finite_stops_the_run(tmp_path, monkeypatch):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "adversarial.steps=6", "run.log_every=2"])
    trainer = setup(config)
    healthy = type(trainer).generator_update

    def infinite_norm(self, step, scheduled_beta):
        g_loss, g_norm = healthy(self, step, scheduled_beta)
        return g_loss, g_norm * float("inf") if self.progress.adv_step == 2 else g_norm

    monkeypatch.setattr(type(trainer), "generator_update", infinite_norm)
    with pytest.raises(NonFiniteLossError, match="non-finite g_grad_norm = inf in the adversarial phase at step 3"):
        trainer.fit()


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_memory_stays_flat_across_evaluations_and_checkpoints(tmp_path):
    # what could leak is per evaluation and checkpoint, not per training step: one of each every 2 iterations
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "adversarial.steps=20", "adversarial.eval_every=2",
                                 "adversarial.checkpoint_every=2", "run.keep_checkpoints=2"])
    trainer = setup(config)
    evaluate, usage = trainer.book.evaluate, []

    def measured(*args):
        evaluate(*args)
        gc.collect()
        usage.append(_rss_mb())

    trainer.book.evaluate = measured
    trainer.fit()
    adversarial = usage[2:]  # after the two MLE evaluations: 10 evaluations, 10 checkpoints
    assert len(adversarial) == 10
    assert max(adversarial[3:]) - adversarial[2] < 15, adversarial
