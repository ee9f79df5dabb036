"""Control runs (adversarial.control: removed): the discriminator's signal removed, so that a GAN's gain can be
credited to it. The discriminator never changes, for every algorithm, single and batched; the REINFORCE family's
update does not read it at all (every reward P(real) = 1/2)."""

import pytest
import torch

from relgan.algorithms import algorithm_class, registered
from relgan.assembly import setup
from relgan.cli import main
from relgan.plugins import load_config

from conftest import SMOKE


def _trainer(tmp_path, algorithm, *extra):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.backend=reference", "adversarial.control=removed",
                                 "adversarial.g_lr=0.01", *algorithm_class(algorithm).overrides(small=True), *extra])
    return setup(config, write=False)


@pytest.mark.parametrize("algorithm", list(registered()))
def test_a_control_runs_discriminator_never_changes_and_its_generator_still_trains(tmp_path, algorithm):
    trainer = _trainer(tmp_path, algorithm)
    discriminator = {k: v.clone() for k, v in trainer.disc.state_dict().items()}
    generator = {k: v.clone() for k, v in trainer.gen.state_dict().items()}
    torch.manual_seed(0)
    for _ in range(2):
        values = trainer.adversarial_iteration(torch.tensor(2.0))
    assert all(torch.equal(discriminator[k], v) for k, v in trainer.disc.state_dict().items())
    assert values[3].item() == 0 and torch.isfinite(values[1])  # no D gradient; its loss still logged
    moved = any(not torch.equal(generator[k], v) for k, v in trainer.gen.state_dict().items())
    # the REINFORCE family's reward is 1/2 for every sentence: with a baseline (or MaliGAN's normalised weights)
    # its gradient is exactly 0; without one, 1/2 grad log p(x)
    cls = algorithm_class(algorithm)
    assert moved == (cls.relaxed or getattr(trainer.algorithm.options, "baseline", "mean") == "none"), moved


@pytest.mark.parametrize("algorithm", [name for name, cls in registered().items() if not cls.relaxed])
def test_a_reinforce_control_never_reads_the_discriminator(tmp_path, algorithm):
    """Two runs whose discriminators differ make the same generator update: the reward is 1/2 whatever D says."""
    updates = []
    for scale in (1.0, -3.0):
        trainer = _trainer(tmp_path / str(scale), algorithm, "adversarial.baseline=none"
                           if "baseline" in algorithm_class(algorithm).Options.__dataclass_fields__ else "run.seed=3")
        with torch.no_grad():
            for param in trainer.disc.parameters():
                param.mul_(scale)
        torch.manual_seed(0)
        step = trainer.algorithm.generator_step_draws(trainer.draws, 16)
        trainer.generator_update(step, torch.tensor(1.0))
        updates.append([p.detach().clone() for p in trainer.gen.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*updates, strict=True))


@pytest.mark.slow
def test_batched_control_replicas_keep_their_discriminators(tmp_path):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=two", "run.seeds=[3,5]",
                 "run.replicas=batched", "adversarial.control=removed", "mle.epochs=1", "adversarial.steps=2"]) == 0
    from safetensors.torch import load_file

    from relgan.checkpoint import complete_checkpoints

    for seed in (3, 5):
        run = tmp_path / "two" / f"seed-{seed}"
        first, last = complete_checkpoints(run)[0], complete_checkpoints(run)[-1]
        before, after = load_file(str(first / "model_1.safetensors")), load_file(str(last / "model_1.safetensors"))
        assert all(torch.equal(before[k], after[k]) for k in before)
