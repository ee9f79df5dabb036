"""The adversarial iteration written once (relgan/adversarial.py) and the order of its random draws."""

import json

import pytest

from relgan.assembly import setup
from relgan.plugins import load_config

from conftest import SMOKE


def _records(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("variant", [[], ["adversarial.loss=standard", "adversarial.g_steps=2"]])
def test_drawing_noise_and_masks_up_front_equals_leaving_them_to_the_models(tmp_path, variant):
    """The order adversarial.py writes down is the order in which the reference models draw: a single run whose
    draws are all made by the iteration (as the batched replicas make them) equals, bit for bit, the run whose
    models draw their own Gumbel noise and dropout masks."""
    runs = {}
    for name, materialise in (("models", False), ("iteration", True)):
        config = load_config(SMOKE, [f"run.output_dir={tmp_path}", f"run.name={name}", "mle.epochs=1",
                                     "adversarial.steps=4", "adversarial.eval_every=2", "run.backend=reference",
                                     *variant])
        trainer = setup(config)
        trainer.draws.materialise = materialise
        trainer.fit()
        runs[name] = _records(tmp_path / name)
    assert runs["iteration"] == runs["models"]
