import math

import pytest
import torch

from conftest import require_cpu_kernels

from relgan import gumbel, native
from relgan.gumbel import (
    LearnedInverseTemperature,
    categorical_from_logits,
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
    for step, expected in zip((0, 1000, 1999, 4999), OFFICIAL_VALUES[schedule]):
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
    with native.pytorch_path():
        noise = gumbel_noise((4,))
    assert torch.isfinite(noise).all()
    assert noise[0] == noise[1]  # both clamped to the smallest normal float
    assert noise[2].item() == pytest.approx(-math.log(math.log(2)))


def test_kernel_noise_ignores_thread_count():
    require_cpu_kernels()
    draws = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            draws.append(gumbel_noise((300, 4001), generator=torch.Generator().manual_seed(3)))
        finally:
            torch.set_num_threads(1)
    assert torch.equal(draws[0], draws[1])


def test_kernel_noise_reaches_both_ends_of_u_and_stays_finite():
    """u = (k + 1/2) / 2^23: each end has probability 2^-23, so 2^26 draws hit it (8 times on average)."""
    require_cpu_kernels()
    lowest, highest = -math.log(-math.log(2**-24)), -math.log(-math.log1p(-(2**-24)))
    noise = gumbel_noise((2**14, 2**12), generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(noise).all()
    assert noise.min().item() == pytest.approx(lowest, abs=1e-5)
    assert noise.max().item() == pytest.approx(highest, abs=1e-4)


def test_kernel_noise_of_one_random_word_is_uncorrelated():
    """Elements p and ceil(V/2) + p of a row come from the high and low bits of one 64-bit output."""
    require_cpu_kernels()
    noise = gumbel_noise((20000, 9), generator=torch.Generator().manual_seed(4)).double()
    pairs = torch.stack([noise[:, :4].flatten(), noise[:, 5:].flatten()])  # half = 5
    neighbours = torch.stack([noise[:, :-1].flatten(), noise[:, 1:].flatten()])
    rows = torch.stack([noise[:-1].flatten(), noise[1:].flatten()])
    bound = 4 / math.sqrt(pairs.shape[1])
    for sample in (pairs, neighbours, rows):
        assert abs(torch.corrcoef(sample)[0, 1].item()) < bound


def test_gumbel_noise_has_the_standard_gumbel_moments_and_cdf(kernel_path):
    torch.manual_seed(11)
    n = 400000
    noise = gumbel_noise((n,)).double()
    euler_gamma, variance = 0.5772156649, math.pi**2 / 6
    assert abs(noise.mean().item() - euler_gamma) < 4 * math.sqrt(variance / n)
    assert abs(noise.var().item() - variance) < 0.02
    for x in (-1.0, 0.0, 1.0, 3.0):  # P(G <= x) = exp(-exp(-x))
        assert abs((noise <= x).double().mean().item() - math.exp(-math.exp(-x))) < 4 * math.sqrt(0.25 / n)


def test_token_frequencies_follow_softmax(kernel_path):
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 60000
    tokens, _ = relaxed_sample(logits.expand(n, -1).contiguous(), beta=5.0)
    expected = torch.softmax(logits, 0) * n
    observed = torch.bincount(tokens, minlength=6).float()
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


def test_relaxed_rows_sum_to_one_and_sharpen_with_beta(kernel_path):
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


def test_straight_through_forward_is_one_hot_backward_is_soft(kernel_path):
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
def test_relaxed_sample_equals_softmax_of_perturbed_logits_with_gradients(learned_beta, kernel_path):
    torch.manual_seed(5)
    padded = torch.randn(40, 70)
    logits = padded[:, :61].requires_grad_()  # strided rows, like the generator's padded output layer
    beta = torch.tensor(3.0, requires_grad=learned_beta)
    weights = torch.randn(40, 61)
    rng = torch.Generator().manual_seed(6)
    tokens, relaxed = relaxed_sample(logits, beta, generator=rng)
    (relaxed * weights).sum().backward()
    grads = logits.grad.clone(), beta.grad.clone() if learned_beta else None
    logits.grad = beta.grad = None
    noise = gumbel_noise((40, 61), generator=torch.Generator().manual_seed(6))  # the same noise
    assert torch.equal((logits + noise).argmax(-1), tokens)
    expected = torch.softmax(beta * (logits + noise), -1)
    assert torch.allclose(relaxed, expected, atol=1e-6)
    (expected * weights).sum().backward()
    assert torch.allclose(grads[0], logits.grad, atol=1e-6)
    if learned_beta:
        assert torch.allclose(grads[1], beta.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_categorical_from_logits_follows_the_softmax(temperature, kernel_path):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, -200.0])
    probs = torch.softmax(logits / temperature, 0)[:6]
    n = 60000
    tokens = categorical_from_logits(logits.expand(n, -1).contiguous(), temperature, torch.Generator().manual_seed(5))
    observed = torch.bincount(tokens, minlength=7).float()
    assert observed[6] == 0  # probability exp(-200) underflows to 0: never drawn
    chi2 = ((observed[:6] - probs * n) ** 2 / (probs * n)).sum().item()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


def test_categorical_from_logits_kernel_inverts_the_same_uniforms_as_pytorch():
    require_cpu_kernels()
    logits = torch.randn(2000, 300) * 2
    fused = categorical_from_logits(logits, 1.0, torch.Generator().manual_seed(8))
    with native.pytorch_path():
        plain = categorical_from_logits(logits, 1.0, torch.Generator().manual_seed(8))
    assert (fused == plain).double().mean() > 0.999  # only float rounding at a CDF step may differ


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
