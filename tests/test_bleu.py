import random

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from relgan.evaluation import TextEvaluator
from relgan.io_utils import read_text_lines
from relgan.metrics.bleu import ReferenceIndex, self_bleu_scores, self_bleu_scores_by_order, sentence_bleu_scores

SMOOTH = SmoothingFunction().method1
WORDS = "a the man dog on of sits table red with".split()


def _sentences(rng, count, longest=12):
    return [[rng.choice(WORDS) for _ in range(rng.randint(0, longest))] for _ in range(count)]


def _nltk(references, hypothesis, n):
    return sentence_bleu(references, hypothesis, weights=(1 / n,) * n, smoothing_function=SMOOTH)


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(0)
    references = _sentences(rng, 150)
    references += [["the", "the", "the"], ["a"] * 5, ["x", "y"], ["tie", "a", "b"], ["tie", "c", "d", "e", "f"]]
    hypotheses = _sentences(rng, 250)
    hypotheses += [
        [],  # empty
        ["a"],  # one token
        ["zz", "yy", "xx"],  # no overlap at all
        list(references[3]),  # copied reference
        ["the"] * 12,  # repeated token, clipped
        ["tie", "a", "b", "c"],  # 4 tokens between reference lengths 3 and 5: tie goes to the shorter
        ["dog"],  # shorter than every order
    ]
    return references, hypotheses


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_bleu_equals_nltk_bit_for_bit(corpus, n):
    references, hypotheses = corpus
    ours = sentence_bleu_scores(hypotheses, references, n)
    for hypothesis, score in zip(hypotheses, ours, strict=True):
        expected = _nltk(references, hypothesis, n)
        assert score == expected and type(score) is type(expected), hypothesis


def test_orders_share_one_index(corpus):
    references, hypotheses = corpus
    together = ReferenceIndex(references, 5).scores(hypotheses, [2, 3, 4, 5])
    for n in (2, 3, 4, 5):
        assert together[n] == sentence_bleu_scores(hypotheses, references, n)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_self_bleu_equals_nltk_leave_one_out(corpus, n):
    _, hypotheses = corpus
    samples = [*hypotheses[:120], ["a", "dog"], ["a", "dog"], ["a", "dog", "on"], []]
    ours = self_bleu_scores(samples, n)
    for i, score in enumerate(ours):
        expected = _nltk(samples[:i] + samples[i + 1:], samples[i], n)
        assert score == expected and type(score) is type(expected), (i, samples[i])


def test_self_inclusive_variant_is_near_one(corpus):
    _, hypotheses = corpus
    samples = [s for s in hypotheses if len(s) >= 4][:80]
    scores = self_bleu_scores_by_order(samples, [2, 4], include_self=True)
    assert all(score == 1.0 for score in scores[4])
    assert scores[2] == [_nltk(samples, s, 2) for s in samples]


@pytest.mark.slow
def test_coco_training_captions_against_the_test_set(shared_data):
    train = read_text_lines(shared_data / "image_coco/train.txt", "train")
    test = read_text_lines(shared_data / "image_coco/test.txt", "test")
    report = TextEvaluator(test, "full", [2, 3, 4, 5])(train, ["bleu"])
    assert report["bleu_hypotheses"] == 10000 and report["bleu_references"] == 10000
    expected = {2: 0.740, 3: 0.520, 4: 0.337, 5: 0.218}  # reference/metrics-spec.md §2.5
    for n, value in expected.items():
        assert report[f"bleu-{n}"] == pytest.approx(value, abs=0.0015)
    # the same scores through nltk itself, on a few hypotheses
    evaluator = TextEvaluator(test, "relgan", [4])
    from relgan.tokenization import reference_words
    refs = [reference_words(line) for line in test]
    for line in train[:3]:
        assert evaluator.index.scores([reference_words(line)], [4])[4][0] == _nltk(refs, reference_words(line), 4)


@pytest.mark.parametrize("n", [2, 4])
def test_a_tie_in_the_closest_reference_length_goes_to_the_shorter_reference(n):
    """References of 3 and 5 words only: a 4-word hypothesis is one word from both. nltk takes the shorter
    (brevity penalty 1); the longer would give exp(1 - 5/4)."""
    references = [["tie", "a", "b"], ["tie", "c", "d", "e", "f"], ["a", "the", "man"]]
    hypotheses = [["tie", "a", "b", "c"], ["a", "the", "man", "dog"], ["tie", "c", "d", "e", "f", "g"]]
    ours = sentence_bleu_scores(hypotheses, references, n)
    assert ours == [_nltk(references, hypothesis, n) for hypothesis in hypotheses]
    assert all(score > 0 for score in ours)


@pytest.mark.parametrize("n", [2, 3])
def test_self_bleu_of_samples_whose_length_no_other_sample_has(n):
    """A sample of a length no other sample has takes its closest length among the others (ties to the
    shorter), the path that copies of one length never run: ["dog"] is measured against 2 words (brevity
    penalty exp(1 - 2)), not against its own length."""
    samples = [["a", "dog"], ["a", "dog", "on", "the"], ["the", "dog", "on", "a", "table", "red"],
               ["a", "man", "sits"], ["a", "man", "sits", "on", "the"], ["a", "man"], ["dog"]]
    ours = self_bleu_scores(samples, n)
    assert ours == [_nltk(samples[:i] + samples[i + 1:], samples[i], n) for i in range(len(samples))]
