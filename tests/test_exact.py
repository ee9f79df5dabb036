"""The exact metrics (relgan/metrics/exact.py): every sentence enumerated, KLs, total variation and entropy
against brute force on a toy of nine sentences, for the generator as trained and under a truncating decoding
rule, and the `exact` metric computed and signed on an enumerable oracle."""

import itertools
import json
import math

import pytest
import torch

from relgan.cli import main
from relgan.config import GeneratorConfig, OracleConfig
from relgan.decoding import Decoding
from relgan.metrics.exact import all_sentences, divergences, exact_report
from relgan.models import Generator
from relgan.oracle import OracleLSTM

from conftest import REPO

VOCAB, LENGTH = 3, 2


def _toy():
    torch.manual_seed(0)
    oracle = OracleLSTM(OracleConfig(vocab_size=VOCAB, seq_len=LENGTH, embedding_dim=4, hidden_size=4, seed=5))
    generator = Generator(GeneratorConfig(architecture="lstm", embedding_dim=4, hidden_size=4), VOCAB, LENGTH, 0)
    with torch.no_grad():
        generator.output.weight.mul_(3)
    return oracle, generator


def _brute_force(oracle, generator, decoding):
    """p and q of each of the 9 sentences, step by step (the decoding loop, not teacher forcing)."""
    p, q = {}, {}
    for sentence in itertools.product(range(VOCAB), repeat=LENGTH):
        h, c = oracle._zero_state(1)
        state = generator.initial_state(1)
        token = torch.zeros(1, dtype=torch.long)
        p[sentence] = q[sentence] = 1.0
        for word in sentence:
            logits, h, c = oracle._step(token, h, c)
            p[sentence] *= torch.softmax(logits[0], 0)[word].item()
            g_logits, state = generator.next_logits(token, state)
            q[sentence] *= decoding.probabilities(g_logits[0].double())[word].item()
            token = torch.tensor([word])
    return p, q


@pytest.mark.parametrize("decoding", [Decoding(), Decoding(temperature=0.7), Decoding(top_k=2)],
                         ids=["plain", "temperature", "top-k"])
def test_exact_metrics_equal_brute_force_on_nine_sentences(decoding):
    oracle, generator = _toy()
    p, q = _brute_force(oracle, generator, decoding)
    with torch.no_grad():
        report = exact_report(generator, oracle, decoding)
    forward = sum(p[x] * (math.log(p[x]) - math.log(q[x])) if q[x] > 0 else math.inf for x in p)
    reverse = sum(q[x] * (math.log(q[x]) - math.log(p[x])) for x in p if q[x] > 0)
    assert report["exact_reverse_kl"] == pytest.approx(reverse / LENGTH, rel=1e-6)
    if decoding.truncates:  # some sentence the oracle produces has probability 0
        assert report["exact_forward_kl"] == math.inf == forward
    else:
        assert report["exact_forward_kl"] == pytest.approx(forward / LENGTH, rel=1e-6)
        assert report["exact_forward_kl"] != pytest.approx(report["exact_reverse_kl"], rel=1e-2)  # not symmetric
    assert report["exact_tv"] == pytest.approx(0.5 * sum(abs(p[x] - q[x]) for x in p), rel=1e-6)
    assert report["exact_entropy"] == pytest.approx(-sum(v * math.log(v) for v in q.values() if v > 0) / LENGTH,
                                                    rel=1e-6)
    assert report["oracle_entropy"] == pytest.approx(-sum(v * math.log(v) for v in p.values()) / LENGTH, rel=1e-6)


def test_sentences_are_enumerated_once_in_order_and_identical_models_have_no_divergence():
    assert all_sentences(3, 2, 0, 9).tolist() == [list(x) for x in itertools.product(range(3), repeat=2)]
    assert all_sentences(3, 2, 4, 6).tolist() == [[1, 1], [1, 2]]
    log_p = torch.tensor([0.5, 0.25, 0.25]).log().double()
    zero = divergences(log_p, log_p, 2)
    assert zero["exact_forward_kl"] == zero["exact_reverse_kl"] == zero["exact_tv"] == 0
    assert zero["exact_entropy"] == zero["oracle_entropy"] == pytest.approx(1.5 * math.log(2) / 2)


@pytest.mark.slow
def test_the_exact_metric_is_computed_and_signed_on_the_exact_benchmark(tmp_path):
    """The benchmark's config at a smaller V^T (6^5 sentences), so that the run takes seconds."""
    assert main(["train", "--config", str(REPO / "configs" / "exact.yaml"), f"run.output_dir={tmp_path}",
                 "run.name=exact", "data.oracle.vocab_size=6", "data.oracle.seq_len=5", "data.oracle.num_train=256",
                 "data.oracle.num_test=128", "data.validation_size=64", "mle.epochs=1", "mle.eval_every=1",
                 "adversarial.steps=0",
                 "eval.num_samples=64", "eval.metrics=[exact]"]) == 0
    records = [json.loads(line) for line in (tmp_path / "exact" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "signatures" in r][-1]
    assert last["signatures"]["exact"].startswith("exact|oracle-seed:1234|V:6|T:5|kl-unit:nats-per-token|")
    assert 0 < last["exact_reverse_kl"] and 0 < last["exact_forward_kl"] < math.inf and 0 < last["exact_tv"] < 1
    assert 0 < last["oracle_entropy"] < math.log(6)
