"""The algorithms of adversarial.algorithm (relgan/algorithms): each trains, each estimator holds what theory
guarantees against the exact gradient (relgan/gradient_lab.py), rewards equal hand computations, batched replicas
equal separate runs, resume is bitwise, and impossible combinations are one-line errors."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file
from scipy import stats
from test_batched import SHORT, _assert_close_runs

from relgan.algorithms import algorithm_class, build_algorithm, registered
from relgan.algorithms.maligan import MaliGAN
from relgan.algorithms.reinforce import PolicyStepDraws
from relgan.algorithms.seqgan import SeqGAN
from relgan.assembly import setup
from relgan.checkpoint import complete_checkpoints
from relgan.cli import main
from relgan.config import GeneratorConfig
from relgan.gradient_lab import estimate, estimator_config, exact_gradient, make_lab
from relgan.gumbel import conditional_gumbel
from relgan.models import Generator
from relgan.plugins import load_config

from conftest import SMOKE

ALGORITHMS = list(registered())


def _overrides(algorithm):
    return algorithm_class(algorithm).overrides(small=True)


# ------------------------------------------------------------------------------------------ training


def _objective(trainer, repeats=12):
    """The adversarial objective the algorithm lowers (its logged g_loss) on ``repeats`` seeded draws [repeats]:
    the same draws each call, so that two calls pair up."""
    beta = torch.tensor(2.0)
    values = []
    with torch.no_grad():
        for seed in range(repeats):
            torch.manual_seed(1000 + seed)
            step = trainer.algorithm.generator_step_draws(trainer.draws, 32)
            values.append(trainer.algorithm.generator_loss(trainer.gen, trainer.disc, beta, step)[1])
    return torch.stack(values)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_generator_steps_lower_the_objective_the_algorithm_optimises(tmp_path, algorithm):
    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "mle.epochs=1", "adversarial.g_lr=0.01",
                                 "run.backend=reference", *_overrides(algorithm)])
    trainer = setup(config, write=False)
    before = _objective(trainer)
    torch.manual_seed(0)
    for _ in range(40):  # the discriminator stays fixed
        step = trainer.algorithm.generator_step_draws(trainer.draws, 32)
        trainer.generator_update(step, torch.tensor(2.0))
    gains = before - _objective(trainer)  # paired: the same draws before and after
    z = gains.mean() / (gains.std() / len(gains) ** 0.5)
    assert z > 6 and gains.mean() > 0.005, (gains.mean(), z)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_run_trains_logs_and_resumes_bitwise(tmp_path, algorithm):
    args = ["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=whole", "mle.epochs=1",
            "adversarial.steps=4", "adversarial.checkpoint_every=2", "adversarial.eval_every=2",
            *_overrides(algorithm)]
    assert main(args) == 0
    whole = tmp_path / "whole"
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert last["phase"] == "adversarial" and all(k in last for k in ("g_loss", "d_loss", "nll_oracle"))
    assert ("beta" in last) == algorithm_class(algorithm).relaxed  # beta counts for relaxed algorithms only
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    shutil.rmtree(complete_checkpoints(resumed)[-1])
    shutil.rmtree(resumed / "generator")
    assert main([*args[:3], f"run.output_dir={tmp_path}", "run.name=resumed", *args[5:], "--resume"]) == 0
    left, right = load_file(str(whole / "generator" / "model.safetensors")), \
        load_file(str(resumed / "generator" / "model.safetensors"))
    assert all(torch.equal(left[k], right[k]) for k in left)
    assert (resumed / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [name for name, cls in registered().items() if cls.batched])
def test_batched_replicas_equal_separate_reference_runs(tmp_path, algorithm):
    overrides = [*SHORT, f"run.output_dir={tmp_path}", *_overrides(algorithm)]
    assert main(["train", "--config", str(SMOKE), *overrides, "run.name=two", "run.seeds=[3,5]",
                 "run.replicas=batched"]) == 0
    for seed in (3, 5):
        assert main(["train", "--config", str(SMOKE), *overrides, f"run.name=alone{seed}", f"run.seed={seed}",
                     "run.backend=reference"]) == 0
        _assert_close_runs(tmp_path / "two" / f"seed-{seed}", tmp_path / f"alone{seed}")


def test_an_algorithm_that_cannot_batch_is_a_clear_error(monkeypatch):
    from relgan.errors import ConfigError
    from relgan.replicas import replica_mode

    monkeypatch.setattr(algorithm_class("gumbel-rao"), "batched", False)
    seeds = ["run.seeds=[1,2]", *_overrides("gumbel-rao")]
    with pytest.raises(ConfigError, match=re.escape("run.replicas=batched: adversarial.algorithm=gumbel-rao draws")):
        replica_mode(load_config(SMOKE, [*seeds, "run.replicas=batched"]))
    assert replica_mode(load_config(SMOKE, seeds))[0] == "sequential"


@pytest.mark.parametrize("overrides, message", [
    (["adversarial.algorithm=seqgan"], "adversarial.algorithm=seqgan needs adversarial.loss=standard, not rsgan: "
                                       "its rewards read the discriminator as a classifier"),
    (["adversarial.algorithm=maligan", "adversarial.loss=wgan-gp"],
     "adversarial.algorithm=maligan needs adversarial.loss=standard, not wgan-gp"),
    (["adversarial.algorithm=maligan", "adversarial.loss=standard", "adversarial.batch_size=1"],
     "adversarial.algorithm=maligan: its weights are normalised over the batch"),
    (["adversarial.algorithm=seqgan", "adversarial.loss=standard", "adversarial.baseline=mean",
      "adversarial.batch_size=1"], "adversarial.algorithm=seqgan: baseline=mean subtracts the mean reward"),
    (["adversarial.algorithm=seqgan", "adversarial.loss=standard", "gumbel.beta_max=50"],
     "gumbel.beta_max = 50.0 has no effect with adversarial.algorithm = 'seqgan'"),
    (["adversarial.rollouts=4"], "adversarial.rollouts = 4 has no effect with adversarial.algorithm = 'relgan'; "
                                 "it counts with adversarial.algorithm=seqgan"),
    (["adversarial.rolouts=4"], "unknown key 'adversarial.rolouts' (did you mean 'adversarial.rollouts'?)"),
    (["adversarial.rao_samples=4"], "adversarial.rao_samples = 4 has no effect"),
    (["adversarial.algorithm=seqgan", "adversarial.loss=standard", "gumbel.straight_through=true"],
     "gumbel.straight_through = true contradicts adversarial.algorithm = 'seqgan'"),
    (["adversarial.algorithm=reinforce"], "adversarial.algorithm = 'reinforce' is not allowed"),
])
def test_impossible_combinations_are_one_line_errors(tmp_path, capsys, overrides, message):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "--dry-run", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if not line.startswith("warning:")]  # the smoke config's gumbel
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err     # keys are reset, with a warning


def test_a_saved_straight_through_config_trains_as_the_straight_through_algorithm(tmp_path, caplog):
    config = load_config(SMOKE, ["gumbel.straight_through=true"])
    assert config.adversarial.algorithm == "straight-through" and "straight_through" not in config.to_dict()["gumbel"]
    assert "deprecated" in caplog.text
    assert build_algorithm(config).hard


# ------------------------------------------------------------------------------------------ rewards


def _uniform_generator(vocab, length):
    """A generator whose every step is uniform over the vocabulary: the token drawn by inversion of u is
    floor(u * V), so rollouts can be written down by hand."""
    generator = Generator(GeneratorConfig(architecture="lstm", embedding_dim=4, hidden_size=4), vocab, length, 0)
    with torch.no_grad():
        generator.output.weight.zero_()
        generator.output.bias.zero_()
    return generator


def _score(ids, labels=None):
    """A sentence logit a hand can compute: the number of 1 tokens minus 1."""
    return (ids == 1).float().sum(dim=1) - 1


def test_seqgan_rewards_are_the_mean_score_of_completions_by_hand():
    vocab, length, size, n = 3, 4, 2, 3
    generator = _uniform_generator(vocab, length)
    tokens = torch.tensor([[1, 0, 2, 1], [2, 2, 1, 0]])
    torch.manual_seed(0)
    rows = (length - 1) * n * size
    step = PolicyStepDraws(None, torch.rand(size, length), torch.rand(rows, length))
    config = estimator_config("seqgan", rollouts=n)
    rewards = SeqGAN(config).rewards(generator, _score, tokens, step)

    expected = torch.zeros(size, length)
    for b in range(size):
        for t in range(length - 1):  # prefix x_0..t, completed n times; rows ordered (prefix, rollout, sentence)
            for k in range(n):
                u = step.rollout_uniforms[(t * n + k) * size + b]
                completed = [int(tokens[b, i]) if i <= t else int(u[i] * vocab) for i in range(length)]
                expected[b, t] += torch.sigmoid(_score(torch.tensor([completed]))[0]) / n
        expected[b, -1] = torch.sigmoid(_score(tokens[b:b + 1])[0])
    torch.testing.assert_close(rewards, expected)

    config.adversarial.options.baseline = "mean"  # minus the other sentence's reward at the same position
    with_baseline = SeqGAN(config).rewards(generator, _score, tokens, step)
    torch.testing.assert_close(with_baseline, expected - expected.flip(0))


def test_maligan_rewards_are_normalised_importance_weights_minus_their_mean():
    tokens = torch.tensor([[1, 1, 0], [0, 2, 2], [1, 0, 1]])
    logits = _score(tokens)  # 1, -1, 1
    odds = torch.sigmoid(logits) / (1 - torch.sigmoid(logits))  # D / (1 - D)
    expected = (odds / odds.sum() - 1 / 3).unsqueeze(1).expand(3, 3)
    step = PolicyStepDraws(None, torch.rand(3, 3), None)
    rewards = MaliGAN(estimator_config("maligan")).rewards(None, _score, tokens, step)
    torch.testing.assert_close(rewards, expected)
    assert rewards[:, 0].sum().abs() < 1e-6


def test_rollouts_keep_the_prefix_and_follow_the_generator():
    generator = Generator(GeneratorConfig(architecture="lstm", embedding_dim=4, hidden_size=6), 5, 6, 0)
    torch.manual_seed(1)
    prefixes = torch.randint(5, (4000, 6))
    lengths = torch.full((4000,), 3)
    completed = generator(prefixes, mode="rollout", lengths=lengths, uniforms=torch.rand(4000, 6))
    assert torch.equal(completed[:, :3], prefixes[:, :3])
    # position 3 follows p(x_3 | the prefix): check on the rows of one prefix value
    rows = (prefixes[:, :3] == prefixes[0, :3]).all(dim=1)
    with torch.no_grad():
        probs = torch.softmax(generator(prefixes[:1])[0, 3], dim=-1)
    counts = torch.bincount(completed[rows, 3], minlength=5).double()
    expected = counts.sum() * probs.double() / probs.double().sum()
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


# ------------------------------------------------------------------------------------------ estimators


@pytest.fixture(scope="module")
def lab():
    lab = make_lab()
    return lab, exact_gradient(lab)[0]


def _estimates(lab, algorithm, repeats=400, beta=1.0, seed=0, **options):
    return estimate(lab, estimator_config(algorithm, **options), beta=beta, batch_size=16, repeats=repeats,
                    seed=seed)


def _directions(exact, count=6):
    """The exact gradient's direction and random unit directions [count, P] (seeded)."""
    random = torch.randn(count - 1, exact.numel(), generator=torch.Generator().manual_seed(7), dtype=exact.dtype)
    directions = torch.cat([exact.unsqueeze(0), random])
    return directions / directions.norm(dim=1, keepdim=True)


def _z_scores(draws, target, directions):
    """z of the mean of each projection of the draws [R, P] onto ``directions`` against ``target`` [P] (or against
    another Estimates' mean, whose standard error counts too). The coordinates of a gradient are strongly
    correlated, so the test is on a few projections, each a scalar mean of independent draws."""
    projected = draws.draws @ directions.t()  # [R, D]
    error = projected.var(dim=0) / len(projected)
    if isinstance(target, torch.Tensor):
        centre = directions @ target
    else:
        other = target.draws @ directions.t()
        centre, error = other.mean(dim=0), error + other.var(dim=0) / len(other)
    return (projected.mean(dim=0) - centre) / error.sqrt()


# Six projections at |z| < 4 each: a false alarm about once in 2,500 seeds.
Z_LIMIT = 4.0


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"rollouts": 0}, {"rollouts": 0, "baseline": "mean"}, {"rollouts": 3}])
def test_reinforce_is_unbiased_within_its_standard_error(lab, options):
    lab, exact = lab
    z = _z_scores(_estimates(lab, "seqgan", **options), exact, _directions(exact))
    assert z.abs().max() < Z_LIMIT, z


@pytest.mark.slow
def test_the_leave_one_out_baseline_lowers_reinforces_variance(lab):
    lab, _ = lab
    assert _estimates(lab, "seqgan", rollouts=0, baseline="mean").variance < \
        0.6 * _estimates(lab, "seqgan", rollouts=0).variance


@pytest.mark.slow
def test_gumbel_rao_has_straight_throughs_mean_and_no_more_variance(lab):
    lab, exact = lab
    straight = _estimates(lab, "straight-through", repeats=600)
    rao = _estimates(lab, "gumbel-rao", repeats=600, seed=1, rao_samples=10)
    directions = _directions(exact)
    z = _z_scores(rao, straight, directions)
    assert z.abs().max() < Z_LIMIT, z
    assert rao.variance < straight.variance
    # and both are biased for the objective itself: the relaxation is not the discrete score
    assert _z_scores(straight, exact, directions).abs().max() > 2 * Z_LIMIT


def test_conditional_gumbel_draws_keep_the_token_and_match_rejection_sampling():
    torch.manual_seed(0)
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0])
    token = torch.tensor(0)
    exponentials = torch.empty(200000, 4).exponential_()
    noise = conditional_gumbel(logits, token, exponentials)  # [K, V]
    assert ((logits + noise).argmax(dim=-1) == token).all()
    # E[softmax(2 (o + g)) | argmax = 0] by rejection from unconditional Gumbel draws
    free = -torch.log(-torch.log(torch.rand(800000, 4).clamp(min=1e-30)))
    kept = free[(logits + free).argmax(dim=-1) == token]
    by_rejection = torch.softmax(2 * (logits + kept), dim=-1)
    conditional = torch.softmax(2 * (logits + noise), dim=-1)
    standard_error = (by_rejection.var(0) / len(kept) + conditional.var(0) / len(conditional)).sqrt()
    assert ((by_rejection.mean(0) - conditional.mean(0)).abs() < 4 * standard_error).all()
