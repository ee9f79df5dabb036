"""The fast backends against the reference models: every parity case on every instruction-set build this CPU
executes and on 1 and 2 threads, the builds it cannot execute compiled, and the kernels' own properties (noise,
sampling, NaN, double backward)."""

import math

import pytest
import torch
import torch.nn.functional as F

from relgan.config import DiscriminatorConfig
from relgan.decoding import Decoding
from relgan.fast import build, parity
from relgan.fast import discriminator as fast_discriminator
from relgan.fast import gumbel as fast_gumbel
from relgan.fast.onednn import linear_for_steps, onednn_linear
from relgan.gumbel import categorical_sample, relaxed_sample
from relgan.losses import gradient_penalty
from relgan.models import Discriminator, Generator

pytestmark = pytest.mark.slow  # the kernels of every instruction set, built and checked


UNEXECUTABLE_ISAS = [isa for isa in build.X86_ISAS if isa not in build.executable_isas()] if build._is_x86() else []


@pytest.mark.skipif(not UNEXECUTABLE_ISAS, reason="this CPU executes every instruction-set build")
@pytest.mark.parametrize("isa", UNEXECUTABLE_ISAS)
def test_builds_this_cpu_cannot_execute_still_compile(isa, default_kernels):
    """Another machine of this kind may have AVX-512: its build (ATen's 16-lane vectors) must compile here."""
    build.compile_only(isa)


@pytest.mark.parametrize("case", parity.COVERAGE, ids=lambda case: f"{case.unit}: {case.label}")
def test_fast_path_equals_the_reference(case, kernels, threads):
    """Outputs and every gradient, the same noise and dropout masks passed in (relgan/fast/parity.py)."""
    assert case.run(kernels) == []


def test_parity_check_catches_a_wrong_output_layer(default_kernels, monkeypatch):
    """The checks are not blind: an output layer that the fast path does not reproduce is reported."""
    g = next(case for case in parity.COVERAGE if case.unit == "generator").build()
    monkeypatch.setattr(Generator, "output_logits", lambda self, hidden: self.output(torch.tanh(hidden)))
    problems = parity.check_generator(g, default_kernels)
    assert any("token_nll" in p for p in problems) and any("sample" in p for p in problems)


def test_fast_discriminator_on_real_data_with_tied_windows(default_kernels):
    """Padding repeats windows: the fast max picks the first of equal windows, which changes no logit and no
    weight gradient."""
    torch.manual_seed(5)
    d = Discriminator(DiscriminatorConfig(embedding_dim=8, num_representations=4, filter_sizes=[2, 3], num_filters=5,
                                          hidden_size=6, dropout=0.0), vocab_size=9, seq_len=7)
    ids = torch.randint(0, 9, (4, 7))
    ids[:, 3:] = 0
    upstream = torch.randn(16)
    results = []
    for classify in (lambda e: Discriminator.classify(d, e),
                     lambda e: fast_discriminator.classify(d, default_kernels, e)):
        d.zero_grad()
        logits = classify(d.embed(ids))
        (logits * upstream).sum().backward()
        results.append((logits.detach(), {name: p.grad.clone() for name, p in d.named_parameters()}))
    assert parity.mismatch("logits", results[1][0], results[0][0]) == []
    for name, grad in results[0][1].items():
        assert parity.mismatch(name, results[1][1][name], grad) == []


def test_wgan_gp_penalty_through_the_fast_discriminator(default_kernels):
    """The second-order gradient (conv max, highway and oneDNN products differentiated twice)."""
    torch.manual_seed(9)
    d = Discriminator(DiscriminatorConfig(embedding_dim=8, num_representations=4, filter_sizes=[2, 3], num_filters=5,
                                          hidden_size=6, dropout=0.0), vocab_size=9, seq_len=7)
    real = torch.randint(0, 9, (3, 7))
    fake = torch.softmax(torch.randn(3, 7, 9) * 3, -1)
    grads = []
    for fast in (False, True):
        if fast:
            d.__dict__["classify"] = lambda e, m=None: fast_discriminator.classify(d, default_kernels, e, m)
        torch.manual_seed(10)
        d.zero_grad()
        gradient_penalty(d, real, fake, weight=10.0).backward()
        grads.append({name: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for name, p in d.named_parameters()})
    del d.__dict__["classify"]
    assert grads[0]["conv_weights.0"].abs().sum() > 0 and grads[0]["highway_gate.weight"].abs().sum() > 0
    for name, grad in grads[0].items():
        assert parity.mismatch(name, grads[1][name], grad, rtol=1e-4, atol=1e-6) == []


def test_fast_dropout_drops_a_fraction_p_independently(default_kernels):
    torch.manual_seed(7)
    bits = fast_discriminator.dropout_bits((501, 397))  # not a multiple of 4 elements
    kept = bits >= fast_discriminator.dropout_keep_threshold(0.25)
    n = kept.numel()
    assert abs(kept.double().mean().item() - 0.75) < 4 * (0.75 * 0.25 / n) ** 0.5
    pairs = (kept.flatten()[:-1] & kept.flatten()[1:]).double().mean().item()  # neighbours share a 64-bit word
    assert abs(pairs - 0.75**2) < 4 * (0.75**2 * (1 - 0.75**2) / n) ** 0.5
    features, both = torch.ones(501, 397), torch.zeros(501, 794)  # t = 1/2, relu(0) = 0: h = 1/2
    value = fast_discriminator.highway(default_kernels, features, both, 0.25)
    assert torch.equal(torch.unique(value), torch.tensor([0.0, 0.5 / 0.75]))


# ----------------------------------------------------------------------------------- sampling kernels


def test_kernel_noise_ignores_thread_count(kernels):
    draws = []
    for count in (1, 2):
        torch.set_num_threads(count)
        try:
            draws.append(fast_gumbel.gumbel_noise(kernels, 300, 4001, seed=3))
        finally:
            torch.set_num_threads(1)
    assert torch.equal(draws[0], draws[1])


def test_kernel_noise_reaches_both_ends_of_u_and_stays_finite(default_kernels):
    """u = (k + 1/2) / 2^23: each end has probability 2^-23, so 2^26 draws hit it (8 times on average)."""
    lowest, highest = -math.log(-math.log(2**-24)), -math.log(-math.log1p(-(2**-24)))
    noise = fast_gumbel.gumbel_noise(default_kernels, 2**14, 2**12, seed=3)
    assert torch.isfinite(noise).all()
    assert noise.min().item() == pytest.approx(lowest, abs=1e-5)
    assert noise.max().item() == pytest.approx(highest, abs=1e-4)


def test_kernel_noise_has_the_standard_gumbel_moments_and_cdf(default_kernels):
    n = 400000
    noise = fast_gumbel.gumbel_noise(default_kernels, 1, n, seed=11).double().flatten()
    euler_gamma, variance = 0.5772156649, math.pi**2 / 6
    assert abs(noise.mean().item() - euler_gamma) < 4 * math.sqrt(variance / n)
    assert abs(noise.var().item() - variance) < 0.02
    for x in (-1.0, 0.0, 1.0, 3.0):  # P(G <= x) = exp(-exp(-x))
        assert abs((noise <= x).double().mean().item() - math.exp(-math.exp(-x))) < 4 * math.sqrt(0.25 / n)


def test_kernel_noise_of_one_random_word_is_uncorrelated(default_kernels):
    """Elements p and ceil(V/2) + p of a row come from the high and low bits of one 64-bit output."""
    noise = fast_gumbel.gumbel_noise(default_kernels, 20000, 9, seed=4).double()
    pairs = torch.stack([noise[:, :4].flatten(), noise[:, 5:].flatten()])  # half = 5
    neighbours = torch.stack([noise[:, :-1].flatten(), noise[:, 1:].flatten()])
    rows = torch.stack([noise[:-1].flatten(), noise[1:].flatten()])
    bound = 4 / math.sqrt(pairs.shape[1])
    for sample in (pairs, neighbours, rows):
        assert abs(torch.corrcoef(sample)[0, 1].item()) < bound


@pytest.mark.parametrize("learned_beta", [False, True])
def test_fused_gumbel_softmax_equals_the_reference_with_its_noise(learned_beta, kernels, threads):
    """The kernel's (tokens, relaxed) and gradients are the reference's given the kernel's own noise; rows
    strided like the padded output layer's, 61 columns (whole vectors and a partial one)."""
    torch.manual_seed(5)
    logits = torch.randn(40, 70)[:, :61].requires_grad_()
    beta = torch.tensor(3.0, requires_grad=learned_beta)
    weights = torch.randn(40, 61)
    rng = torch.Generator().manual_seed(6)
    tokens, relaxed = fast_gumbel.relaxed_sample(kernels, logits, beta, rng)
    (relaxed * weights).sum().backward()
    got = logits.grad.clone(), beta.grad.clone() if learned_beta else None
    logits.grad = beta.grad = None
    seed = fast_gumbel.draw_seed(torch.Generator().manual_seed(6))
    noise = fast_gumbel.gumbel_noise(kernels, 40, 61, seed)
    want_tokens, want = relaxed_sample(logits, beta, noise)
    assert torch.equal(tokens, want_tokens)
    (want * weights).sum().backward()
    assert parity.mismatch("relaxed", relaxed, want) == []
    assert parity.mismatch("logits gradient", got[0], logits.grad) == []
    if learned_beta:
        assert parity.mismatch("beta gradient", got[1], beta.grad) == []


def test_token_frequencies_of_the_fused_sampler_follow_softmax(default_kernels):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 60000
    tokens, _ = fast_gumbel.relaxed_sample(default_kernels, logits.expand(n, -1).contiguous(), 5.0,
                                           torch.Generator().manual_seed(0))
    expected = torch.softmax(logits, 0) * n
    observed = torch.bincount(tokens, minlength=6).float()
    assert ((observed - expected) ** 2 / expected).sum().item() < 20.5  # chi-square, 5 dof, p = 0.001


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_inversion_kernel_draws_the_reference_tokens(temperature, kernels):
    logits = torch.randn(2000, 300, generator=torch.Generator().manual_seed(1)) * 2
    logits[:, 7] = -200.0  # probability exp(-200) underflows to 0: never drawn
    fused = fast_gumbel.categorical_from_logits(kernels, logits, temperature, torch.Generator().manual_seed(8))
    plain = categorical_sample(Decoding(temperature).probabilities(logits), torch.Generator().manual_seed(8))
    assert (fused == plain).double().mean() > 0.999  # only float rounding at a CDF step may differ
    assert not (fused == 7).any()


# --------------------------------------------------------------------------------- other fast pieces


def test_conv_max_kernel_propagates_nan_like_torch_max(kernels):
    torch.manual_seed(0)
    sequence = torch.randn(4, 6, 1, requires_grad=True)
    weight = torch.tensor([[2.0, -2.0], [1.0, 1.0], [-1.0, 0.5]])
    with torch.no_grad():
        sequence[1, 3] = float("nan")
        sequence[2, 2:4] = float("inf")  # inf - inf = NaN in two filters
    values = fast_discriminator.conv_max_over_time(kernels, sequence, weight, 2)
    plain = (sequence.unfold(1, 2, 1).reshape(4, 5, 2) @ weight.T).max(dim=1).values
    torch.testing.assert_close(values, plain, equal_nan=True)
    assert values[1].isnan().all() and values[2, [0, 2]].isnan().all() and not values[[0, 3]].isnan().any()
    grad = torch.randn(4, 3)
    (fast_grad,) = torch.autograd.grad(values, sequence, grad)
    (plain_grad,) = torch.autograd.grad(plain, sequence, grad)
    torch.testing.assert_close(fast_grad, plain_grad, equal_nan=True)  # the same (first) NaN windows win


def test_conv_max_weight_gradient_does_not_depend_on_the_thread_count(default_kernels):
    torch.manual_seed(8)
    sequence = torch.randn(301, 12, 2, requires_grad=True)
    weight = torch.randn(7, 6, requires_grad=True)
    grads = []
    for count in (1, 2):
        torch.set_num_threads(count)
        try:
            fast_discriminator.conv_max_over_time(default_kernels, sequence, weight, 3).sum().backward()
        finally:
            torch.set_num_threads(1)
        grads.append((sequence.grad.clone(), weight.grad.clone()))
        sequence.grad = weight.grad = None
    assert torch.equal(grads[0][0], grads[1][0]) and torch.allclose(grads[0][1], grads[1][1])


def test_kernel_cross_entropy_rejects_targets_outside_the_vocabulary(default_kernels):
    from relgan.fast.generator import _PaddedCrossEntropy

    with pytest.raises(RuntimeError, match=r"[Tt]arget"):
        _PaddedCrossEntropy.apply(default_kernels, torch.randn(2, 64), torch.tensor([1, 5]), 5)


@pytest.mark.parametrize("rows", [3, 64])
def test_linear_for_steps_equals_linear(rows):
    torch.manual_seed(12)
    x, w, b = torch.randn(rows, 40), torch.randn(70, 40), torch.randn(70)
    with torch.no_grad():  # packed for oneDNN
        torch.testing.assert_close(linear_for_steps(w, b, rows)(x), F.linear(x, w, b))


@pytest.mark.parametrize("rows", [5, 130])
def test_onednn_linear_equals_linear_with_first_and_second_order_gradients(rows):
    torch.manual_seed(13)
    x = torch.randn(rows, 48, requires_grad=True)
    w = torch.randn(72, 48, requires_grad=True)
    upstream = torch.randn(rows, 72)
    results = []
    for product in (onednn_linear, F.linear):
        out = product(x, w)
        grad_x, grad_w = torch.autograd.grad(out, (x, w), upstream, create_graph=True)
        second = torch.autograd.grad(grad_x.square().sum() + grad_w.sum(), w)[0]
        results.append((out, grad_x, grad_w, second))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    out = onednn_linear(x, w)  # first order only: the oneDNN input gradient
    torch.testing.assert_close(torch.autograd.grad(out, x, upstream)[0], upstream @ w, rtol=1e-5, atol=1e-4)
