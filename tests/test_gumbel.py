import math

import pytest
import torch

from relgan import gumbel
from relgan.decoding import Decoding
from relgan.gumbel import (
    LearnedInverseTemperature,
    categorical_sample,
    gumbel_noise,
    inverse_temperature,
    relaxed_sample,
)

# beta at i = 0 / 1000 / 1999 / 4999 with beta_max = 1000, N = 5000 (reference/relgan-spec.md §4)
OFFICIAL_VALUES = {
    "exp": (1, 3.98, 15.8, 998.6),
    "lin": (1, 200.8, 400.5, 1000),
    "log": (1, 811, 893, 1000),
    "sigmoid": (1.045, 3.47, 119.7, 1000),
    "quad": (1, 41.0, 160.7, 1000),
    "sqrt": (1, 447.8, 632.7, 1000),
}


@pytest.mark.parametrize("schedule", sorted(OFFICIAL_VALUES))
def test_schedules_match_the_official_table(schedule):
    for step, expected in zip((0, 1000, 1999, 4999), OFFICIAL_VALUES[schedule], strict=True):
        value = inverse_temperature(schedule, step, 1000.0, 5000)
        assert value == pytest.approx(expected, rel=2e-3, abs=2e-3)


def test_schedule_formulas_by_hand():
    assert inverse_temperature("no", 17, 100.0, 2000) == 100.0
    assert inverse_temperature("exp", 1000, 100.0, 2000) == pytest.approx(10.0)  # 100 ** 0.5
    assert inverse_temperature("lin", 1999, 100.0, 2000) == pytest.approx(100.0)
    assert inverse_temperature("quad", 1999, 100.0, 2000) == pytest.approx(100.0)
    assert inverse_temperature("sqrt", 1999, 100.0, 2000) == pytest.approx(100.0)
    assert inverse_temperature("log", 1999, 100.0, 2000) == pytest.approx(100.0)
    assert inverse_temperature("sigmoid", 1000, 100.0, 2000) == pytest.approx(50.5)
    # with the paper's horizon (N = adversarial steps) beta nearly reaches beta_max at the last step;
    # with the official N = 5000 and 2000 steps it stops at beta_max ** 0.4
    assert inverse_temperature("exp", 1999, 100.0, 2000) == pytest.approx(100 ** (1999 / 2000))
    assert inverse_temperature("exp", 2000, 100.0, 5000) == pytest.approx(6.30957, rel=1e-5)


def test_gumbel_noise_is_finite_at_the_edges_of_u(monkeypatch):
    edges = torch.tensor([0.0, 1e-45, 0.5, 1 - 2**-24])
    monkeypatch.setattr(gumbel.torch, "rand", lambda *a, **k: edges.clone())
    noise = gumbel_noise((4,))
    assert torch.isfinite(noise).all()
    assert noise[0] == noise[1]  # both clamped to the smallest normal float
    assert noise[2].item() == pytest.approx(-math.log(math.log(2)))


def test_gumbel_noise_has_the_standard_gumbel_moments_and_cdf():
    torch.manual_seed(11)
    n = 400000
    noise = gumbel_noise((n,)).double()
    euler_gamma, variance = 0.5772156649, math.pi**2 / 6
    assert abs(noise.mean().item() - euler_gamma) < 4 * math.sqrt(variance / n)
    assert abs(noise.var().item() - variance) < 0.02
    for x in (-1.0, 0.0, 1.0, 3.0):  # P(G <= x) = exp(-exp(-x))
        assert abs((noise <= x).double().mean().item() - math.exp(-math.exp(-x))) < 4 * math.sqrt(0.25 / n)


def test_token_frequencies_follow_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 60000
    tokens, _ = relaxed_sample(logits.expand(n, -1).contiguous(), beta=5.0)
    expected = torch.softmax(logits, 0) * n
    observed = torch.bincount(tokens, minlength=6).float()
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


def test_relaxed_rows_sum_to_one_and_sharpen_with_beta():
    torch.manual_seed(1)
    logits = torch.randn(500, 30)
    previous = 0.0
    for beta in (1.0, 10.0, 100.0, 1000.0):
        torch.manual_seed(2)
        tokens, relaxed = relaxed_sample(logits, beta)
        assert torch.allclose(relaxed.sum(-1), torch.ones(500), atol=1e-5)
        assert torch.equal(relaxed.argmax(-1), tokens)
        sharpness = relaxed.max(-1).values.mean().item()
        assert sharpness > previous
        previous = sharpness
    assert previous > 0.99


def test_straight_through_forward_is_one_hot_backward_is_soft():
    logits = torch.randn(8, 10, requires_grad=True)
    weights = torch.randn(8, 10)
    torch.manual_seed(3)
    tokens, hard = relaxed_sample(logits, 2.0, hard=True)
    assert torch.equal(hard, torch.nn.functional.one_hot(tokens, 10).float())
    (hard * weights).sum().backward()
    grad_hard = logits.grad.clone()
    logits.grad = None
    torch.manual_seed(3)
    _, soft = relaxed_sample(logits, 2.0)
    (soft * weights).sum().backward()
    assert torch.allclose(grad_hard, logits.grad)


@pytest.mark.parametrize("learned_beta", [False, True])
def test_relaxed_sample_is_the_softmax_of_the_perturbed_logits_with_gradients(learned_beta):
    """By hand: tokens = argmax(o + g), relaxed = exp(beta (o + g)) / sum exp(beta (o + g)), and the gradients
    of <w, relaxed>: d/do_j = beta y_j (w_j - <w, y>), d/dbeta = sum_j y_j (w_j - <w, y>) (o_j + g_j)."""
    torch.manual_seed(5)
    logits = torch.randn(40, 61, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(3.0, dtype=torch.float64, requires_grad=learned_beta)
    noise = gumbel_noise((40, 61), generator=torch.Generator().manual_seed(6)).double()
    weights = torch.randn(40, 61, dtype=torch.float64)
    tokens, relaxed = relaxed_sample(logits, beta, noise)
    (relaxed * weights).sum().backward()
    z = (logits + noise).detach()
    assert torch.equal(tokens, z.argmax(-1))
    y = (beta.detach() * z).exp() / (beta.detach() * z).exp().sum(-1, keepdim=True)
    torch.testing.assert_close(relaxed, y)
    centred = weights - (weights * y).sum(-1, keepdim=True)
    torch.testing.assert_close(logits.grad, beta.detach() * y * centred)
    if learned_beta:
        torch.testing.assert_close(beta.grad, (y * centred * z).sum())


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_at_a_temperature_follows_the_softmax(temperature):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, -200.0])
    probs = torch.softmax(logits / temperature, 0)[:6]
    n = 60000
    rows = Decoding(temperature).probabilities(logits.expand(n, -1))
    tokens = categorical_sample(rows, torch.Generator().manual_seed(5))
    observed = torch.bincount(tokens, minlength=7).float()
    assert observed[6] == 0  # probability exp(-200) underflows to 0: never drawn
    chi2 = ((observed[:6] - probs * n) ** 2 / (probs * n)).sum().item()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


def test_categorical_sample_follows_the_probabilities():
    probs = torch.softmax(torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0]), 0)
    n = 60000
    tokens = categorical_sample(probs.expand(n, -1), torch.Generator().manual_seed(5))
    observed = torch.bincount(tokens, minlength=6).float()
    chi2 = ((observed - probs * n) ** 2 / (probs * n)).sum().item()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001
    # a token of probability 0 is never drawn, even at the edges of u
    assert categorical_sample(torch.tensor([[0.0, 1.0, 0.0]]).expand(1000, -1)).eq(1).all()


def test_learned_beta_starts_at_one_and_stays_positive():
    module = LearnedInverseTemperature()
    assert module().item() == 1.0
    module.rho.data.fill_(-50.0)
    assert module().item() > 0
    beta = module()
    beta.backward()
    assert module.rho.grad is not None and math.isfinite(module.rho.grad.item())
