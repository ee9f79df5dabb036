"""The exact-gradient lab: each algorithm's estimator of the generator's gradient against the exact gradient.

With a vocabulary and a length small enough to enumerate every sentence (V = 6, T = 4: 1,296 sentences), the
objective every estimator targets, J = E_{x ~ G}[f(one_hot(x))] with f = sigmoid of a fixed random
discriminator's sentence logit, has the exact gradient sum_x f(x) grad p(x). Each estimator is the algorithm's
own code (``Algorithm.gradient_estimate``), drawn many times: the mean against the exact gradient is its bias,
the spread its variance. ``experiments/gradient_lab.py`` runs the sweep; the tests assert what theory guarantees.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from relgan.algorithms import algorithm_class, build_algorithm
from relgan.algorithms.reinforce import sentence_logits
from relgan.config import Config, DiscriminatorConfig, GeneratorConfig
from relgan.draws import RunDraws
from relgan.models import Discriminator, Generator


@dataclass
class Lab:
    """A small generator, a fixed discriminator (no dropout) and every sentence of the game."""

    generator: Generator
    discriminator: Discriminator
    sentences: Tensor  # all V^T sentences [V^T, T]

    @property
    def vocab_size(self) -> int:
        return self.generator.vocab_size

    def score(self, inputs: Tensor, labels: Tensor | None = None) -> Tensor:
        """The fixed discriminator's logit of each sentence [B] (ids [B, T] or one-hots [B, T, V])."""
        return sentence_logits(self.discriminator, inputs, labels)

    def scores(self) -> Tensor:
        """The logit of every sentence of the game [V^T], in chunks."""
        with torch.no_grad():
            return torch.cat([self.score(chunk) for chunk in self.sentences.split(CHUNK)])


CHUNK = 65536  # sentences per pass when enumerating a game


def make_lab(vocab_size: int = 6, seq_len: int = 4, hidden_size: int = 8, seed: int = 0, trained_steps: int = 0) -> Lab:
    """An LSTM generator (embedding 8) and a discriminator of 16 filters of heights 2 and 3, seeded. With
    ``trained_steps`` the discriminator is trained that many Adam steps to tell a target LSTM's samples (the real
    data: another seed's generator at twice the logit scale) from the generator's, as a GAN's would be; otherwise
    it is random, its sentence logits scaled to mean 0 and spread 2 (sigmoid far from saturation)."""
    torch.manual_seed(seed)
    generator = Generator(
        GeneratorConfig(architecture="lstm", embedding_dim=8, hidden_size=hidden_size), vocab_size, seq_len, start_id=0
    )
    discriminator = Discriminator(
        DiscriminatorConfig(
            embedding_dim=8, num_representations=1, filter_sizes=[2, 3], num_filters=16, hidden_size=8, dropout=0.0
        ),
        vocab_size,
        seq_len,
    )
    if trained_steps:
        train_discriminator(discriminator, generator, trained_steps, seed)
    discriminator.eval()
    for param in discriminator.parameters():
        param.requires_grad_(False)
    sentences = torch.tensor(list(itertools.product(range(vocab_size), repeat=seq_len)))
    lab = Lab(generator, discriminator, sentences)
    if not trained_steps:
        with torch.no_grad():
            logits = lab.scores()
            discriminator.logit.weight.mul_(2 / logits.std())
            discriminator.logit.bias.sub_(lab.scores().mean())
    return lab


def train_discriminator(discriminator: Discriminator, generator: Generator, steps: int, seed: int) -> None:
    """``steps`` Adam steps (lr 1e-2, batches of 64 + 64) of the standard GAN loss: a target LSTM's samples
    against the generator's."""
    target = Generator(generator.config, generator.vocab_size, generator.seq_len, start_id=0)
    with torch.no_grad():
        target.output.weight.mul_(2)  # a more peaked distribution than the generator's: something to tell apart
    draws = torch.Generator().manual_seed(seed + 1)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    discriminator.train()
    for _ in range(steps):
        with torch.no_grad():
            real = target.sample_tokens(64, generator=draws)
            fake = generator.sample_tokens(64, generator=draws)
        (logits,) = discriminator(torch.cat([real, fake]))
        labels = torch.cat([torch.ones(64), torch.zeros(64)])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.view(128, -1).mean(dim=1), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def flat_gradient(generator: Generator, loss: Tensor) -> Tensor:
    """d loss / d (the generator's parameters), flattened [P]."""
    grads = torch.autograd.grad(loss, list(generator.parameters()))
    return torch.cat([grad.reshape(-1) for grad in grads])


def exact_gradient(lab: Lab) -> tuple[Tensor, float]:
    """(grad J [P], J) by enumerating every sentence, J = sum_x p(x) sigmoid(score(x)), in chunks."""
    values = torch.sigmoid(lab.scores()).double()
    with torch.no_grad():
        probs = torch.cat(
            [(-lab.generator(chunk, mode="nll").double().sum(dim=1)).exp() for chunk in lab.sentences.split(CHUNK)]
        )
    objective = (probs * values).sum().item()
    gradient = torch.zeros(sum(p.numel() for p in lab.generator.parameters()), dtype=torch.float64)
    for chunk, chunk_values in zip(lab.sentences.split(CHUNK), (values - objective).split(CHUNK), strict=True):
        # sum_x grad p(x) = 0: centring f leaves the gradient and avoids cancelling large terms
        log_probs = -lab.generator(chunk, mode="nll").double().sum(dim=1)
        gradient += flat_gradient(lab.generator, (log_probs.exp() * chunk_values).sum()).double()
    return gradient, objective


@dataclass
class Estimates:
    """Independent draws of one estimator of grad J."""

    draws: Tensor  # [R, P]
    seconds_per_gradient: float

    @property
    def mean(self) -> Tensor:
        return self.draws.mean(dim=0)

    @property
    def standard_error(self) -> Tensor:
        """Of the mean, per coordinate [P]."""
        return self.draws.std(dim=0) / len(self.draws) ** 0.5

    @property
    def variance(self) -> float:
        """The total variance of one draw: the trace of its covariance."""
        return self.draws.var(dim=0).sum().item()

    def against(self, exact: Tensor) -> dict[str, float]:
        """Bias of the mean (relative error, cosine; an unbiased estimator's relative error is about its
        ``noise_floor``) and the variance of one draw."""
        mean = self.mean
        return {
            "relative_error": ((mean - exact).norm() / exact.norm()).item(),
            "noise_floor": (self.variance / len(self.draws)) ** 0.5 / exact.norm().item(),
            "cosine": torch.nn.functional.cosine_similarity(mean, exact, dim=0).item(),
            "variance": self.variance,
            "relative_variance": self.variance / exact.norm().item() ** 2,
            "seconds_per_gradient": self.seconds_per_gradient,
        }


def estimator_config(algorithm: str, **options: Any) -> Config:
    """A config naming ``algorithm`` with its ``options`` (gumbel-rao's rao_samples, seqgan's rollouts...). The
    lab's score is fixed, so the GAN loss and the beta schedule play no part."""
    config = Config()
    config.adversarial.algorithm = algorithm
    config.adversarial.options = algorithm_class(algorithm).Options(**options)
    return config


def estimate(
    lab: Lab, config: Config, *, beta: float, batch_size: int, repeats: int, seed: int = 0, warmup: int = 0
) -> Estimates:
    """``repeats`` independent estimates of grad J by ``config``'s algorithm, each on ``batch_size`` samples.

    An estimator with learned parts (REBAR's and RELAX's control variates) trains them at their rate on every
    estimate, as it would in a run, after ``warmup`` estimates that only train them; each estimate stays
    unbiased, since its control variate was fitted to earlier draws only."""
    algorithm = build_algorithm(config)
    learned = algorithm.learned_parts(lab.vocab_size, lab.generator.seq_len)
    tuned: list[Tensor] = []
    if learned is not None:
        algorithm.learned = learned.module
        tuned = list(learned.module.parameters())
        optimiser = torch.optim.Adam(tuned, lr=learned.lr)
    torch.manual_seed(seed)
    train = torch.zeros(batch_size, lab.generator.seq_len, dtype=torch.long)  # a real batch nobody reads
    draws = RunDraws(train, None, lab.discriminator, lab.vocab_size, materialise=True)
    scale = torch.tensor(beta)
    weights = list(lab.generator.parameters())
    gradients = []
    skipped = warmup if tuned else 0
    start = time.perf_counter()
    for i in range(skipped + repeats):
        if i == skipped:
            start = time.perf_counter()
        step = algorithm.generator_step_draws(draws, batch_size)
        grads = torch.autograd.grad(algorithm.gradient_estimate(lab.generator, lab.score, scale, step), weights + tuned)
        if tuned:
            for param, grad in zip(tuned, grads[len(weights) :], strict=True):
                param.grad = grad
            optimiser.step()
        if i >= skipped:
            gradients.append(-torch.cat([grad.reshape(-1) for grad in grads[: len(weights)]]))
    seconds = (time.perf_counter() - start) / repeats
    return Estimates(torch.stack(gradients).double(), seconds)
