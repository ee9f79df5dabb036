import logging

import pytest
import torch
from transformers import AutoTokenizer

from relgan.data import load_corpus
from relgan.errors import DataError
from relgan.plugins import load_config
from relgan.tokenization import BOS, EOS, UNK, build_word_tokenizer, decode, encode, split_words


def _files(tmp_path, train_lines, test_lines, **overrides):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    test.write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    extra = [f"{k}={v}" for k, v in overrides.items()]
    return load_config(None, ["data.source=files", f"data.train_file={train}", f"data.test_file={test}", *extra])


def test_nltk_and_whitespace_modes():
    assert split_words("A man's bike, parked.", "nltk") == ["a", "man", "'s", "bike", ",", "parked", "."]
    assert split_words("A man's bike, parked.", "whitespace") == ["A", "man's", "bike,", "parked."]


def test_vocabulary_specials_frequency_and_size():
    sentences = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    tok = build_word_tokenizer(sentences)
    assert [tok.convert_ids_to_tokens(i) for i in range(6)] == [EOS, UNK, BOS, "a", "b", "c"]
    assert tok.pad_token_id == tok.eos_token_id == 0 and tok.unk_token_id == 1 and tok.bos_token_id == 2
    assert len(build_word_tokenizer(sentences, min_frequency=2)) == 5  # a, b
    assert len(build_word_tokenizer(sentences, max_size=1)) == 4  # a


def test_encode_pads_with_eos_truncates_and_decodes():
    tok = build_word_tokenizer([["a", "b", "c"]])
    ids, truncated = encode(tok, ["a b", "c zz a b"], seq_len=3)
    a, b, c = (tok.convert_tokens_to_ids(w) for w in "abc")
    assert ids.tolist() == [[a, b, 0], [c, 1, a]] and truncated == 1
    assert decode(tok, ids, eos_id=0) == ["a b", "c <unk> a"]
    # everything after the first end of sentence is padding, whatever it holds
    assert decode(tok, torch.tensor([[a, 0, b]]), eos_id=0) == ["a"]


def test_tokenizer_save_and_reload_gives_identical_ids(tmp_path):
    tok = build_word_tokenizer([["the", "cat", "sat"], ["on", "the", "mat"]])
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = ["the cat sat on the mat", "the dog"]
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert (again.eos_token_id, again.unk_token_id, again.bos_token_id) == (0, 1, 2)


def test_corpus_from_files(tmp_path, caplog):
    config = _files(tmp_path, ["A cat sat.", "", "a dog ran fast .", "   "], ["a cat ran far away today ."])
    with caplog.at_level(logging.WARNING, logger="relgan"):
        corpus = load_corpus(config.data)
    assert corpus.seq_len == 5  # longest training sentence
    assert corpus.train_ids.shape == (2, 5) and corpus.test_ids.shape == (1, 5)
    assert corpus.decode(corpus.train_ids) == ["a cat sat .", "a dog ran fast ."]
    assert corpus.decode(corpus.test_ids) == ["a cat ran <unk> <unk>"]  # vocabulary from training only
    assert corpus.start_id == corpus.tokenizer.bos_token_id and corpus.eos_id == 0
    assert "skipped 2 blank lines" in caplog.text
    assert "1 test sentences are longer than seq_len = 5 and were truncated" in caplog.text


@pytest.mark.slow
def test_coco_lines_round_trip(shared_data):
    config = load_config(None, ["data.source=files", f"data.train_file={shared_data / 'image_coco/train.txt'}",
                                f"data.test_file={shared_data / 'image_coco/test.txt'}"])
    corpus = load_corpus(config.data)
    assert corpus.seq_len == 37 and len(corpus.train_ids) == 10000
    expected = [" ".join(split_words(line, "nltk")) for line in corpus.train_text[:500]]
    assert corpus.decode(corpus.train_ids[:500]) == expected


@pytest.mark.parametrize("content, message", [
    (None, "data.train_file: file not found"),
    (b"", "data.train_file: file is empty"),
    (b"\n \n", "data.train_file: file is empty"),
    (b"caf\xe9 au lait\n", "is not UTF-8 text (invalid byte at line 1)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "looks binary"),
])
def test_bad_training_files(tmp_path, content, message):
    config = _files(tmp_path, ["a b"], ["a b"])
    if content is None:
        config.data.train_file = str(tmp_path / "nope.txt")
    else:
        (tmp_path / "train.txt").write_bytes(content)
    with pytest.raises(DataError) as info:
        load_corpus(config.data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreachable_hub_dataset_suggests_local_files():
    config = load_config(None, ["data.source=hub", "data.dataset=nobody/no-such-dataset-relgan"])
    with pytest.raises(DataError, match=r"cannot load 'nobody/no-such-dataset-relgan'.*data.source=files"):
        load_corpus(config.data)


def test_the_word_tokenizer_splits_only_the_lines_final_period_unlike_punkt_first():
    """The documented difference from nltk.word_tokenize: without punkt, a period inside the line stays on its
    word; an (untrained) punkt in front splits it off."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    line = "a cat on a mat. a dog on a rug."
    assert split_words(line, "nltk") == ["a", "cat", "on", "a", "mat.", "a", "dog", "on", "a", "rug", "."]
    punkt_first = [w for s in PunktSentenceTokenizer().tokenize(line) for w in split_words(s, "nltk")]
    assert punkt_first == ["a", "cat", "on", "a", "mat", ".", "a", "dog", "on", "a", "rug", "."]


@pytest.mark.slow
def test_official_tokenisation_differences_on_the_benchmark_splits(shared_data):
    """The figures docs/metrics.md reports (experiments/official_conventions.py on the current nltk)."""
    from experiments.official_conventions import tokenisation_report

    train = tokenisation_report(shared_data / "image_coco" / "train.txt", True, None)
    test = tokenisation_report(shared_data / "image_coco" / "test.txt", False, None)
    assert (train["vocabulary_line"], train["lines_differing_punkt"]) == (4659, 6)
    assert (test["lines_differing_punkt"], test["lines"]) == (5, 10000)


def test_decoding_normalises_whitespace_a_subword_tokenizer_produces():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a cat\non a mat"], vocab_size=260, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    ids = torch.tensor([tok("a cat\n on  a mat")["input_ids"] + [tok.eos_token_id]])
    assert decode(tok, ids, tok.eos_token_id) == ["a cat on a mat"]


def test_a_resumed_oracle_run_holds_out_the_same_sentences(tmp_path):
    """The run directory keeps the oracle's whole training split: a resumed run must neither train on its held-out
    sentences nor select on sentences it trained on (an older relgan saved the split without them)."""
    from relgan.data import ORACLE_FILE, save_corpus_artifacts

    config = load_config(None, ["data.source=oracle", "data.oracle.vocab_size=6", "data.oracle.seq_len=4",
                                "data.oracle.num_train=40", "data.oracle.num_test=8", "data.validation_size=10"])
    fresh = load_corpus(config.data)
    save_corpus_artifacts(fresh, tmp_path)
    resumed = load_corpus(config.data, saved=tmp_path)
    assert resumed.valid_ids is not None and fresh.valid_ids is not None
    assert torch.equal(resumed.train_ids, fresh.train_ids) and torch.equal(resumed.valid_ids, fresh.valid_ids)
    assert len(fresh.train_ids) == 30

    from relgan.oracle import load_oracle_corpus, save_oracle_corpus

    oracle, _, test = load_oracle_corpus(tmp_path / ORACLE_FILE, config.data.oracle)
    save_oracle_corpus(tmp_path / ORACLE_FILE, oracle, fresh.train_ids, test)  # what the older relgan wrote
    with pytest.raises(DataError, match=r"holds 30 training sentences, not data\.oracle\.num_train = 40"):
        load_corpus(config.data, saved=tmp_path)
