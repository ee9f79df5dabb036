import math

import pytest
import torch
from torch import nn

from relgan.losses import gan_losses, gradient_penalty

R = [1.0, -2.0]
F = [0.5, 3.0]


def sp(x):  # softplus
    return math.log1p(math.exp(x))


def mean(values):
    return sum(values) / len(values)


EXPECTED = {
    "rsgan": (
        mean([sp(f - r) for r, f in zip(R, F, strict=True)]),
        mean([sp(r - f) for r, f in zip(R, F, strict=True)]),
    ),
    "standard": (mean([sp(-r) for r in R]) + mean([sp(f) for f in F]), mean([sp(-f) for f in F])),
    "js": (mean([sp(-r) for r in R]) + mean([sp(f) for f in F]), -mean([sp(f) for f in F])),
    "kl": (mean([sp(-r) for r in R]) + mean([sp(f) for f in F]), -mean(F)),
    "hinge": (mean([max(0, 1 - r) for r in R]) + mean([max(0, 1 + f) for f in F]), -mean(F)),
    "tv": (mean([math.tanh(f) - math.tanh(r) for r, f in zip(R, F, strict=True)]), -mean([math.tanh(f) for f in F])),
    "wgan-gp": (mean(F) - mean(R), -mean(F)),
    "ls": (mean([(r - 1) ** 2 for r in R]) + mean([f**2 for f in F]), mean([(f - 1) ** 2 for f in F])),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_losses_by_hand(kind):
    d_loss, g_loss = gan_losses(kind, torch.tensor(R), torch.tensor(F))
    assert d_loss.item() == pytest.approx(EXPECTED[kind][0], rel=1e-6)
    assert g_loss.item() == pytest.approx(EXPECTED[kind][1], rel=1e-6)


def test_rsgan_pairs_logits_elementwise():
    """Real logit i with fake logit i, by hand: not every pair, and not the difference of the means."""
    real, fake = [1.0, -2.0, 0.5], [4.0, -1.0, 0.0]
    d_loss, g_loss = gan_losses("rsgan", torch.tensor(real), torch.tensor(fake))
    elementwise = mean([sp(4.0 - 1.0), sp(-1.0 + 2.0), sp(0.0 - 0.5)])
    assert d_loss.item() == pytest.approx(elementwise, rel=1e-6)
    assert g_loss.item() == pytest.approx(mean([sp(1.0 - 4.0), sp(-2.0 + 1.0), sp(0.5 - 0.0)]), rel=1e-6)
    all_pairs = mean([sp(f - r) for r in real for f in fake])
    of_means = sp(mean(fake) - mean(real))
    assert abs(elementwise - all_pairs) > 0.1 and abs(elementwise - of_means) > 0.1


class LinearCritic(nn.Module):
    """S logits per sentence: logit_s = <x, W_s>, so dD/dx summed over s is sum_s W_s."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights  # [S, T, V]

    def forward(self, x):
        return (torch.einsum("btv,stv->bs", x, self.weights).reshape(-1),)


def test_gradient_penalty_by_hand():
    torch.manual_seed(0)
    weights = torch.randn(3, 4, 5)
    critic = LinearCritic(weights)
    real = torch.randint(0, 5, (2, 4))
    fake = torch.softmax(torch.randn(2, 4, 5), -1)
    penalty = gradient_penalty(critic, real, fake, weight=10.0)
    slope = weights.sum(0).norm().item()
    assert penalty.item() == pytest.approx(10.0 * (slope - 1) ** 2, rel=1e-5)
