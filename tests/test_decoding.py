"""Decoding rules (relgan/decoding.py): temperature, top-k and top-p against distributions written out by hand, the
sampled per-step distribution against the truncated, renormalised softmax (chi-square), and `relgan sample`."""

import pytest
import torch
from scipy import stats

from relgan.cli import main
from relgan.config import GeneratorConfig
from relgan.decoding import Decoding
from relgan.models import Generator


def test_top_k_and_top_p_keep_what_their_definitions_say_by_hand():
    probs = torch.tensor([0.05, 0.40, 0.10, 0.30, 0.15], dtype=torch.float64)
    logits = probs.log()
    # top-p 0.69: the running total crosses p at 0.30 (0.40 + 0.30 = 0.70), which is kept, and the nucleus ends
    torch.testing.assert_close(Decoding(top_p=0.69).probabilities(logits),
                               torch.tensor([0, 0.4, 0, 0.3, 0], dtype=torch.float64) / 0.7)
    # top-p 0.75: the running total crosses 0.75 at 0.15, which is kept
    torch.testing.assert_close(Decoding(top_p=0.75).probabilities(logits),
                               torch.tensor([0, 0.4, 0, 0.3, 0.15], dtype=torch.float64) / 0.85)
    torch.testing.assert_close(Decoding(top_p=0.3).probabilities(logits),
                               torch.tensor([0, 1.0, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(Decoding(top_k=2).probabilities(logits),
                               torch.tensor([0, 0.4, 0, 0.3, 0], dtype=torch.float64) / 0.7)
    # top-k 3 renormalises to 0.4/0.85, 0.3/0.85, 0.15/0.85; the first two reach top-p 0.8 (0.82), so the third
    # goes (top-p on the probabilities before top-k's renormalisation would keep it: 0.70 < 0.8)
    torch.testing.assert_close(Decoding(top_k=3, top_p=0.8).probabilities(logits),
                               torch.tensor([0, 0.4, 0, 0.3, 0], dtype=torch.float64) / 0.7)
    # temperature first: at T = 0.5 the probabilities are squared and renormalised
    squared = probs**2 / (probs**2).sum()
    torch.testing.assert_close(Decoding(temperature=0.5).probabilities(logits), squared)
    torch.testing.assert_close(Decoding(temperature=0.5, top_k=1).probabilities(logits),
                               torch.tensor([0, 1.0, 0, 0, 0], dtype=torch.float64))
    assert Decoding(top_k=2).log_probabilities(logits)[0] == float("-inf")


def test_ties_are_broken_by_token_id():
    logits = torch.zeros(4)
    torch.testing.assert_close(Decoding(top_k=2).probabilities(logits), torch.tensor([0.5, 0.5, 0.0, 0.0]))


@pytest.mark.parametrize("value, message", [({"top_k": -1}, "top-k"), ({"top_p": 0.0}, "top-p"),
                                            ({"top_p": 1.5}, "top-p"), ({"temperature": 0.0}, "temperature")])
def test_impossible_rules_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        Decoding(**value)


@pytest.mark.parametrize("decoding", [Decoding(top_p=0.8), Decoding(top_k=3), Decoding(temperature=0.7, top_p=0.9)],
                         ids=["top-p", "top-k", "temperature and top-p"])
def test_sampled_steps_follow_the_truncated_renormalised_softmax(decoding):
    """The first token's and, given it, the second token's counts in 20,000 sentences against the rule's
    distribution of the generator's logits (chi-square on the kept tokens; none outside them)."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(architecture="lstm", embedding_dim=8, hidden_size=8), 7, 3, start_id=0)
    with torch.no_grad():
        generator.output.weight.mul_(4)  # peaked enough that truncation leaves tokens out
        tokens = generator.sample_tokens(20000, decoding=decoding, generator=torch.Generator().manual_seed(1))
        first = decoding.probabilities(generator.logits(tokens[:1])[0, 0]).double()
        chosen = tokens[:, 0].mode().values
        second = decoding.probabilities(generator.logits(tokens[tokens[:, 0] == chosen][:1])[0, 1]).double()
    for observed, expected in ((tokens[:, 0], first), (tokens[tokens[:, 0] == chosen, 1], second)):
        counts = torch.bincount(observed, minlength=7).double()
        kept = expected > 0
        assert (expected == 0).any() and counts[~kept].sum() == 0
        expected = counts.sum() * expected[kept] / expected[kept].sum()  # the sums agree to rounding
        assert stats.chisquare(counts[kept].numpy(), expected.numpy()).pvalue > 1e-3


def test_sample_top_k_1_is_greedy_and_bad_top_p_is_one_line(smoke_run, tmp_path, capsys):
    out = tmp_path / "greedy.txt"
    assert main(["sample", "--run", str(smoke_run), "--num", "20", "--top-k", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 20 and len(set(lines)) == 1  # the most probable token at every step: one sentence
    assert main(["sample", "--run", str(smoke_run), "--num", "200", "--top-p", "0.5", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert len(set(out.read_text().splitlines())) > 1
    capsys.readouterr()
    assert main(["sample", "--run", str(smoke_run), "--top-p", "0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--top-p must be in (0, 1]" in err
