import torch

from relgan.config import OracleConfig
from relgan.oracle import OracleLSTM, build_oracle_corpus, load_oracle_corpus, save_oracle_corpus

SMALL = OracleConfig(vocab_size=40, seq_len=6, num_train=300, num_test=50, seed=11)


def test_same_seed_same_oracle_and_data():
    a, train_a, test_a = build_oracle_corpus(SMALL)
    b, train_b, test_b = build_oracle_corpus(SMALL)
    for name, buffer in a.named_buffers():
        assert torch.equal(buffer, getattr(b, name))
    assert torch.equal(train_a, train_b) and torch.equal(test_a, test_b)
    assert train_a.shape == (300, 6) and not torch.equal(train_a[:50], test_a)
    other, _, _ = build_oracle_corpus(OracleConfig(**{**SMALL.__dict__, "seed": 12}))
    assert not torch.equal(a.embedding, other.embedding)


def test_weights_are_standard_normal():
    oracle = OracleLSTM(OracleConfig(vocab_size=2000, seq_len=4, seed=3))
    values = torch.cat([b.flatten() for b in oracle.buffers()])
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01


def test_nll_own_samples_below_uniform_random():
    oracle, train, _ = build_oracle_corpus(SMALL)
    random = torch.randint(0, SMALL.vocab_size, train.shape, generator=torch.Generator().manual_seed(0))
    assert oracle.nll(train) < oracle.nll(random)


def test_nll_matches_step_by_step_log_probabilities():
    oracle, train, _ = build_oracle_corpus(SMALL)
    ids = train[:3]
    total, h, c = 0.0, *oracle._zero_state(3)
    tokens = torch.full((3,), SMALL.start_token)
    for t in range(SMALL.seq_len):
        logits, h, c = oracle._step(tokens, h, c)
        total -= torch.log_softmax(logits, -1)[torch.arange(3), ids[:, t]].sum().item()
        tokens = ids[:, t]
    assert abs(oracle.nll(ids) - total / ids.numel()) < 1e-12


def test_samples_follow_the_oracle_distribution():
    # first-step tokens are draws from softmax(logits at the start state)
    config = OracleConfig(vocab_size=5, seq_len=2, num_train=20000, num_test=1, seed=5)
    oracle, train, _ = build_oracle_corpus(config)
    logits, _, _ = oracle._step(torch.zeros(1, dtype=torch.long), *oracle._zero_state(1))
    expected = torch.softmax(logits[0], -1) * len(train)
    observed = torch.bincount(train[:, 0], minlength=5).double()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 18.5  # chi-square, 4 degrees of freedom, p = 0.001


def test_save_and_load(tmp_path):
    oracle, train, test = build_oracle_corpus(SMALL)
    save_oracle_corpus(tmp_path / "o.safetensors", oracle, train, test)
    again, train2, test2 = load_oracle_corpus(tmp_path / "o.safetensors", SMALL)
    assert torch.equal(train, train2) and torch.equal(test, test2)
    assert again.nll(train) == oracle.nll(train)
