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
from relgan.algorithms.reinforce import PolicyStepDraws, sentence_logits
from relgan.algorithms.seqgan import SeqGAN
from relgan.assembly import setup
from relgan.checkpoint import complete_checkpoints
from relgan.cli import main
from relgan.config import DiscriminatorConfig, GeneratorConfig
from relgan.gradient_lab import estimator_config
from relgan.gumbel import conditional_gumbel, gumbel_rao
from relgan.models import Discriminator, Generator
from relgan.plugins import load_config

from conftest import REPO, SMOKE, Z_LIMIT, lab_estimates, projections, z_scores

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
@pytest.mark.slow
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
    with torch.no_grad():  # a peaked next-token distribution, which a temperature would visibly change
        generator.output.bias.copy_(torch.tensor([1.5, 0.0, -1.0, 0.5, -2.0]))
    torch.manual_seed(1)
    rows = 20000
    prefixes = torch.randint(5, (rows, 6))
    prefixes[:, :3] = prefixes[0, :3]  # one prefix, completed 20,000 times
    completed = generator(prefixes, mode="rollout", lengths=torch.full((rows,), 3), uniforms=torch.rand(rows, 6))
    assert torch.equal(completed[:, :3], prefixes[:, :3])
    with torch.no_grad():
        probs = torch.softmax(generator(prefixes[:1])[0, 3].double(), dim=-1)  # p(x_3 | the prefix)
    counts = torch.bincount(completed[:, 3], minlength=5).double()
    assert stats.chisquare(counts.numpy(), (rows * probs).numpy()).pvalue > 1e-3


# ------------------------------------------------------------------------------------------ estimators




@pytest.mark.parametrize("options", [{"rollouts": 0}, {"rollouts": 3, "baseline": "mean"}])
def test_reinforce_is_unbiased_within_its_standard_error(lab, options):
    """At a batch of 4 a baseline that counted the sentence's own reward would scale the gradient by 3/4: the
    rollouts' lower variance makes that a z of about 8 (measured), against 2.3 for the right baseline."""
    lab, exact = lab
    z = z_scores(lab_estimates(lab, "seqgan", batch_size=4, **options), exact, projections(exact))
    assert z.abs().max() < Z_LIMIT, z


@pytest.mark.parametrize("algorithm", [name for name, cls in registered().items() if not cls.relaxed])
def test_the_reinforce_policy_samples_and_scores_without_the_generators_dropout(tmp_path, algorithm):
    """A GPT-2 generator with dropout 0.5: the same draws give the same update, and the same sentences as the
    generator in eval mode draws (one policy samples, rolls out and is differentiated)."""
    config = load_config(REPO / "configs" / "smoke_transformer.yaml", [
        f"run.output_dir={tmp_path}", "run.backend=reference", "generator.dropout=0.5", *_overrides(algorithm)])
    trainer = setup(config, write=False)
    torch.manual_seed(0)
    step = trainer.algorithm.generator_step_draws(trainer.draws, 8)
    losses = []
    for _ in range(2):
        trainer.gen.zero_grad(set_to_none=True)
        loss, _ = trainer.algorithm.generator_loss(trainer.gen, trainer.disc, torch.tensor(1.0), step)
        loss.backward()
        losses.append((loss.detach(), [p.grad.clone() for p in trainer.gen.parameters() if p.grad is not None]))
    assert trainer.gen.training  # its mode is restored
    (first, first_grads), (second, second_grads) = losses
    assert torch.equal(first, second) and all(torch.equal(a, b) for a, b in zip(first_grads, second_grads,
                                                                                   strict=True))


def test_reinforce_reads_the_discriminator_without_dropout():
    discriminator = Discriminator(DiscriminatorConfig(embedding_dim=4, num_representations=2, filter_sizes=[2],
                                                      num_filters=4, hidden_size=4, dropout=0.5), 7, 5)
    tokens = torch.randint(7, (6, 5), generator=torch.Generator().manual_seed(0))
    discriminator.train()
    first, second = sentence_logits(discriminator, tokens, None), sentence_logits(discriminator, tokens, None)
    assert torch.equal(first, second) and discriminator.training  # the same score, and train mode is restored
    discriminator.eval()
    (logits,) = discriminator(tokens)
    torch.testing.assert_close(first, logits.view(6, -1).mean(dim=1))


def test_gumbel_rao_backward_is_the_mean_of_the_conditional_relaxations_jacobians_by_hand():
    logits = torch.tensor([[0.2, 1.4, -0.3, 0.8]], dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([2])  # not the argmax: conditioning on argmax(o) instead would show
    exponentials = torch.empty(5, 1, 4, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(3))
    weights = torch.tensor([[0.5, -1.0, 2.0, 0.3]], dtype=torch.float64)
    beta = 1.7
    out = gumbel_rao(logits, tokens, beta, exponentials)
    assert torch.equal(out.detach(), torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=torch.float64))
    (out * weights).sum().backward()
    noise = conditional_gumbel(logits, tokens, exponentials)  # [5, 1, 4], each with argmax at the token
    assert ((logits.detach() + noise).argmax(dim=-1) == 2).all()
    expected = torch.zeros(4, dtype=torch.float64)
    for k in range(5):  # the mean of the relaxation's Jacobians, not the Jacobian at the mean noise
        p = torch.softmax(beta * (logits.detach()[0] + noise[k, 0]), dim=0)
        expected += beta * (torch.diag(p) - torch.outer(p, p)) @ weights[0] / 5
    torch.testing.assert_close(logits.grad[0], expected)


@pytest.mark.slow
def test_the_leave_one_out_baseline_lowers_reinforces_variance(lab):
    lab, _ = lab
    assert lab_estimates(lab, "seqgan", rollouts=0, baseline="mean").variance < \
        0.6 * lab_estimates(lab, "seqgan", rollouts=0).variance


@pytest.mark.slow
def test_gumbel_rao_has_straight_throughs_mean_and_no_more_variance(lab):
    lab, exact = lab
    straight = lab_estimates(lab, "straight-through", repeats=600)
    rao = lab_estimates(lab, "gumbel-rao", repeats=600, seed=1, rao_samples=10)
    directions = projections(exact)
    z = z_scores(rao, straight, directions)
    assert z.abs().max() < Z_LIMIT, z
    assert rao.variance < straight.variance
    # and both are biased for the objective itself: the relaxation is not the discrete score
    assert z_scores(straight, exact, directions).abs().max() > 2 * Z_LIMIT


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
