"""Discriminator-reranked MLE (relgan/reranking.py): resampling weights exp(alpha d) by hand and by draws, the
limit of many candidates equal to the oracle when d is the true log-ratio, a reranker that learns, resampled
sentences that follow the exact limit, and the reranked points of a run (experiments/reproduce.py)."""

import math

import pytest
import torch
from scipy import stats
from test_exact import LENGTH, VOCAB, _toy

from relgan.config import DiscriminatorConfig
from relgan.decoding import Decoding
from relgan.errors import CheckpointError
from relgan.metrics.exact import all_sentences, divergences, generator_log_probs, oracle_log_probs
from relgan.models import Discriminator
from relgan.reranking import (
    exact_reranked,
    reranked_log_probs,
    resample,
    resampling_weights,
    scores_of,
    sir_resampled,
    train_reranker,
)


def test_resampling_weights_by_hand_and_by_draws():
    scores = torch.tensor([0.0, math.log(2), math.log(4)])
    torch.testing.assert_close(resampling_weights(scores, 1.0), torch.tensor([1, 2, 4], dtype=torch.float64) / 7)
    torch.testing.assert_close(resampling_weights(scores, 0.5),
                               torch.tensor([1, 2**0.5, 2], dtype=torch.float64) / (3 + 2**0.5))
    torch.testing.assert_close(resampling_weights(scores, 0.0), torch.full((3,), 1 / 3, dtype=torch.float64))
    picks = resample(scores, 1.0, 70000, torch.Generator().manual_seed(0))
    counts = torch.bincount(picks, minlength=3).double()
    assert stats.chisquare(counts.numpy(), (70000 * torch.tensor([1, 2, 4]) / 7).numpy()).pvalue > 1e-3


def test_reranking_by_the_true_log_ratio_recovers_the_oracle_exactly():
    oracle, generator = _toy()
    log_p, log_q = oracle_log_probs(oracle), generator_log_probs(generator, Decoding())
    before = divergences(log_p, log_q, LENGTH)
    after = divergences(log_p, reranked_log_probs(log_q, log_p - log_q, 1.0), LENGTH)
    assert before["exact_forward_kl"] > 0.05
    assert after["exact_forward_kl"] == pytest.approx(0, abs=1e-12) and after["exact_tv"] == pytest.approx(0, abs=1e-12)
    halfway = divergences(log_p, reranked_log_probs(log_q, log_p - log_q, 0.5), LENGTH)
    assert 0 < halfway["exact_reverse_kl"] < before["exact_reverse_kl"]


def test_a_trained_reranker_tells_real_from_generated_sentences():
    oracle, generator = _toy()
    real = oracle.sample(512, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    discriminator = Discriminator(DiscriminatorConfig(embedding_dim=8, num_representations=1, filter_sizes=[2],
                                                      num_filters=8, hidden_size=8, dropout=0.0), VOCAB, LENGTH)
    losses = train_reranker(discriminator, generator, real, steps=300, seed=0)
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50 - 0.05
    assert not discriminator.training and all_sentences(VOCAB, LENGTH, 0, 9).shape == (9, LENGTH)


class _StopsAfter:
    """The generator, stopped (as by a signal) at its draw number ``draws`` + 1."""

    def __init__(self, generator, draws):
        self.generator, self.draws = generator, draws

    def sample_tokens(self, *args, **kwargs):
        if self.draws == 0:
            raise KeyboardInterrupt
        self.draws -= 1
        return self.generator.sample_tokens(*args, **kwargs)

    def state_dict(self):
        return self.generator.state_dict()


def test_a_stopped_reranker_training_continues_from_its_checkpoint_as_if_never_stopped(tmp_path):
    oracle, generator = _toy()
    real = oracle.sample(256, torch.Generator().manual_seed(1))
    config = DiscriminatorConfig(embedding_dim=8, num_representations=1, filter_sizes=[2], num_filters=8,
                                 hidden_size=8, dropout=0.5)

    def fresh():
        torch.manual_seed(0)
        return Discriminator(config, VOCAB, LENGTH)

    whole = fresh()
    expected = train_reranker(whole, generator, real, steps=7, batch_size=16, seed=3)
    path = tmp_path / "reranker.pt"
    with pytest.raises(KeyboardInterrupt):  # stopped in step 6, after the save of step 4
        train_reranker(fresh(), _StopsAfter(generator, 5), real, steps=7, batch_size=16, seed=3, checkpoint=path,
                       every=2)
    resumed = fresh()
    torch.manual_seed(123)  # a new process draws otherwise; the checkpoint restores the dropout's generator too
    losses = train_reranker(resumed, generator, real, steps=7, batch_size=16, seed=3, checkpoint=path, every=2)
    assert losses == expected
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    with torch.no_grad():
        next(generator.parameters()).add_(0.1)
    with pytest.raises(CheckpointError, match=r"reranker\.pt: a reranker trained with another trained_against; "):
        train_reranker(fresh(), generator, real, steps=7, batch_size=16, seed=3, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"reranker\.pt: not a reranker checkpoint of this discriminator"):
        train_reranker(fresh(), generator, real, steps=7, batch_size=16, seed=3, checkpoint=path)


def test_exact_reranking_at_alpha_zero_is_the_generator_and_a_trained_reranker_moves_it_towards_the_oracle():
    oracle, generator = _toy()
    log_p = oracle_log_probs(oracle)
    real = oracle.sample(512, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    discriminator = Discriminator(DiscriminatorConfig(embedding_dim=8, num_representations=1, filter_sizes=[2],
                                                      num_filters=8, hidden_size=8, dropout=0.0), VOCAB, LENGTH)
    found = exact_reranked(generator, discriminator, log_p, real, VOCAB, (0.0, 1.0), steps=300, seed=0)
    plain = divergences(log_p, generator_log_probs(generator, Decoding()), LENGTH)
    assert found[0.0] == pytest.approx(plain, rel=1e-9)
    assert found[1.0]["exact_forward_kl"] < plain["exact_forward_kl"]


def _reranker():
    torch.manual_seed(0)
    return Discriminator(DiscriminatorConfig(embedding_dim=8, num_representations=1, filter_sizes=[2],
                                             num_filters=8, hidden_size=8, dropout=0.0), VOCAB, LENGTH)


def _frequencies(ids):
    """The share of each of the VOCAB ** LENGTH sentences among ``ids`` [N, LENGTH], in all_sentences' order."""
    index = sum(ids[:, t] * VOCAB ** (LENGTH - 1 - t) for t in range(LENGTH))
    return torch.bincount(index, minlength=VOCAB**LENGTH).double() / len(ids)


def test_resampled_candidates_follow_the_reranked_distribution():
    """SIR's sentences at alpha follow q_alpha = p_G exp(alpha d) / Z, which moves far from p_G: their shares
    are within 0.01 in total variation of the exact q_alpha, whose distance to p_G is many times that."""
    oracle, generator = _toy()
    real = oracle.sample(512, torch.Generator().manual_seed(1))
    discriminator = _reranker()
    alphas = (0.0, 3.0)
    resampled = sir_resampled(generator, discriminator, real, alphas, candidates=200_000, count=100_000, steps=300,
                              seed=0)
    log_q = generator_log_probs(generator, Decoding())
    scores = scores_of(discriminator, all_sentences(VOCAB, LENGTH, 0, len(log_q)))
    plain = log_q.exp()
    for alpha in alphas:
        exact = reranked_log_probs(log_q, scores, alpha).exp()
        found = _frequencies(resampled[alpha])
        assert resampled[alpha].shape == (100_000, LENGTH)
        assert 0.5 * (found - exact).abs().sum() < 0.01, alpha
    moved = 0.5 * (reranked_log_probs(log_q, scores, 3.0).exp() - plain).abs().sum()
    assert moved > 0.1


@pytest.mark.slow
def test_a_runs_reranked_points_come_from_samples_are_signed_and_cached(smoke_run, tmp_path, monkeypatch):
    """Off an enumerable benchmark the verdict's reranked MLE points are SIR samples' metrics: NLL_oracle and the
    LM judges, no NLL_test, a signature naming the candidates; a second call reads them from the run."""
    import shutil

    from experiments import reproduce

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    points, _ = reproduce.reranked(run, [0.0, 4.0], 20, 0, None, candidates=640, num_samples=64)
    assert list(points) == ["reranked alpha=0", "reranked alpha=4"]
    for point in points.values():
        assert {"nll_oracle", "lm_score", "reverse_lm_score"} <= set(point) and "nll_test" not in point
        assert point["signatures"]["reranking"].startswith("reranking|sir|candidates:640|reranker-steps:20|")
        assert "n:64" in point["signatures"]["nll_oracle"]
    assert points["reranked alpha=0"]["nll_oracle"] != points["reranked alpha=4"]["nll_oracle"]
    assert (run / "reranker-s0-steps20.pt").is_file()  # the reranker's training resumes if stopped
    monkeypatch.setattr(reproduce, "reranked_sweep", lambda *args: pytest.fail("not read from the run"))
    assert reproduce.reranked(run, [0.0, 4.0], 20, 0, None, candidates=640, num_samples=64)[0] == points
