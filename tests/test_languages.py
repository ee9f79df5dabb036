"""Text in any language: character and subword tokenisation, a tokenizer of your own, n-gram metrics in the run's
units (CJK-aware BLEU), a byte-order mark that makes no fake word, and a warning where splitting plainly failed."""

import json
import random

import pytest

from relgan.cli import main
from relgan.tokenization import train_bpe_tokenizer

from conftest import SMOKE_TEXT

CHINESE = (
    "我们你他她是的了在有不这个人中大来上国和到说们为子时道也年得就下出会可要天去能对小多然于心学么之都好看起发当没成只如事把还用第样道"
    "想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感"
)
ARABIC_EMOJI = ["مرحبا", "بالعالم", "كيف", "حالك", "اليوم", "😀", "🚀", "🌍", "شكرا", "جميل"]


def _without_specials(line):
    """A sample without the special tokens a barely trained generator may draw."""
    for special in ("<bos>", "<unk>", "<eos>"):
        line = line.replace(special, "")
    return line


def _sentences(rng, alphabet, count, lengths=(5, 12), join=""):
    return [join.join(rng.choice(alphabet) for _ in range(rng.randint(*lengths))) for _ in range(count)]


def _files(tmp_path, train, test, bom=False):
    paths = {"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"}
    for role, lines in (("train", train), ("test", test)):
        text = "\n".join(lines) + "\n"
        paths[role].write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return [f"data.train_file={paths['train']}", f"data.test_file={paths['test']}"]


def _train(tmp_path, files, *overrides, name="zh"):
    return main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}",
                 *files, "eval.metrics=[bleu,self_bleu,nll_test]", "adversarial.steps=2", *overrides])


@pytest.fixture
def chinese(tmp_path):
    rng = random.Random(0)
    return _files(tmp_path, _sentences(rng, CHINESE[:40], 256), _sentences(rng, CHINESE[:40], 50))


@pytest.mark.slow
def test_a_chinese_corpus_trains_samples_readable_text_and_evaluates_per_character(tmp_path, chinese, capsys):
    assert _train(tmp_path, chinese, "data.tokenization=char") == 0
    run = tmp_path / "runs" / "zh"
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["tokenization"] == "char" and last["bleu-2"] > 0.3  # characters, not whole sentences
    out = tmp_path / "samples.txt"
    assert main(["sample", "--run", str(run), "--num", "20", "--out", str(out)]) == 0
    samples = [_without_specials(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(samples) == 20 and sum(map(bool, samples)) >= 15  # a barely trained generator may stop at once
    assert all(set(line) <= set(CHINESE[:40]) for line in samples)  # Chinese characters, no spaces between them
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--metrics", "bleu", "--num-samples", "64",
                 "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["tokenization"] == "char"


def test_chinese_split_into_words_is_a_warning(tmp_path, chinese, capsys):
    assert main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *chinese, "--dry-run",
                 "discriminator.filter_sizes=[1]"]) == 0
    assert "the text is hardly split (a language without spaces?); try data.tokenization=char or bpe" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_bpe_trains_on_the_training_split_and_decodes_without_added_spaces(tmp_path, chinese):
    assert _train(tmp_path, chinese, "data.tokenization=bpe", "data.max_vocab_size=120") == 0
    run = tmp_path / "runs" / "zh"
    out = tmp_path / "samples.txt"
    assert main(["sample", "--run", str(run), "--num", "10", "--out", str(out)]) == 0
    samples = [_without_specials(line) for line in out.read_text().splitlines()]
    assert all(" " not in line and set(line) <= set(CHINESE[:40]) for line in samples)
    vocabulary = json.loads((run / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocabulary) <= 120 and ["<eos>", "<unk>", "<bos>"] == sorted(vocabulary, key=vocabulary.get)[:3]
    # the run's own BLEU and `evaluate --tokenize` its tokenizer are one computation: one signature
    own = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]["signatures"]["bleu"]
    samples = run / "samples" / sorted(p.name for p in (run / "samples").iterdir())[-1]
    out = tmp_path / "again.json"
    assert main(["evaluate", "--samples", str(samples), "--references", chinese[1].split("=", 1)[1],
                 "--tokenize", str(run / "tokenizer"), "--metrics", "bleu", "--protocol", "relgan",
                 "--out", str(out)]) == 0
    again = json.loads(out.read_text())["signatures"]["bleu"]
    assert own.split("|")[4] == again.split("|")[4] and own.split("|")[4].startswith("tok:vocab-")


@pytest.mark.slow
def test_a_tokenizer_that_does_not_know_the_text_is_refused_and_two_tokenizers_never_share_a_signature(
        tmp_path, capsys):
    rng = random.Random(5)
    english = tmp_path / "en"
    english.mkdir()
    assert _train(tmp_path, _files(english, _sentences(rng, "abcdefgh", 64),
                                   _sentences(rng, "abcdefgh", 16)), "data.tokenization=char", "mle.epochs=1",
                  "adversarial.steps=0", name="en") == 0
    chinese_text = tmp_path / "zh.txt"
    chinese_text.write_text("\n".join(_sentences(rng, CHINESE[:40], 30)) + "\n", encoding="utf-8")
    tokenizer = tmp_path / "runs" / "en" / "tokenizer"
    capsys.readouterr()
    assert main(["evaluate", "--samples", str(chinese_text), "--references", str(chinese_text), "--metrics", "bleu",
                 "--tokenize", str(tokenizer), "--out", str(tmp_path / "zh.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "100% of its pieces are unknown (<unk>) to the tokenizer" in err[0], err
    assert not (tmp_path / "zh.json").exists()
    english_text = tmp_path / "en.txt"
    english_text.write_text("\n".join(_sentences(rng, "abcdefgh", 30)) + "\n", encoding="utf-8")
    assert _train(tmp_path, _files(tmp_path, _sentences(rng, "abcdefghij", 64), _sentences(rng, "abcdefghij", 16)),
                  "data.tokenization=char", "mle.epochs=1", "adversarial.steps=0", name="en2") == 0
    fields = []
    for run in ("en", "en2"):
        out = tmp_path / f"{run}.json"
        assert main(["evaluate", "--samples", str(english_text), "--references", str(english_text), "--metrics",
                     "bleu", "--tokenize", str(tmp_path / "runs" / run / "tokenizer"), "--out", str(out)]) == 0
        fields.append(json.loads(out.read_text())["signatures"]["bleu"].split("|")[4])
    assert fields[0] != fields[1] and all(field.startswith("tok:vocab-") for field in fields)


@pytest.mark.slow
def test_a_vocabulary_of_the_specials_alone_is_an_error_and_bpe_below_its_alphabet_a_warning(tmp_path, chinese,
                                                                                            capsys):
    assert _train(tmp_path, chinese, "data.min_frequency=100000", "--dry-run") == 2
    assert "data.min_frequency = 100000 leaves no token of the training split" in capsys.readouterr().err
    assert _train(tmp_path, chinese, "data.tokenization=bpe", "data.max_vocab_size=10", "mle.epochs=1",
                  "adversarial.steps=0", name="small") == 0
    assert "data.max_vocab_size = 10 is below the 43 pieces bpe keeps" in capsys.readouterr().err


@pytest.mark.parametrize("tokenization", ["char", "bpe"])
@pytest.mark.slow
def test_arabic_mixed_with_emoji_trains(tmp_path, tokenization):
    rng = random.Random(1)
    train, test = (_sentences(rng, ARABIC_EMOJI, count, (3, 7), " ") for count in (256, 40))
    files = _files(tmp_path, train, test)
    overrides = ["data.max_vocab_size=200"] if tokenization == "bpe" else []
    assert _train(tmp_path, files, f"data.tokenization={tokenization}", *overrides, name="ar") == 0
    out = tmp_path / "samples.txt"
    assert main(["sample", "--run", str(tmp_path / "runs" / "ar"), "--num", "10", "--out", str(out)]) == 0
    allowed = set("".join(ARABIC_EMOJI)) | {" "}
    assert all(set(_without_specials(line)) <= allowed for line in out.read_text().splitlines())


@pytest.mark.slow
def test_a_tokenizer_of_your_own(tmp_path, chinese):
    rng = random.Random(2)
    directory = tmp_path / "my-tokenizer"
    train_bpe_tokenizer(_sentences(rng, CHINESE[:40], 200), 100).save_pretrained(str(directory))
    assert _train(tmp_path, chinese, f"data.tokenizer={directory}") == 0
    last = [json.loads(line) for line in (tmp_path / "runs" / "zh" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["tokenization"] == "tokenizer"
    assert main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *chinese, "--dry-run",
                 f"data.tokenizer={directory}", "data.tokenization=char"]) == 2


@pytest.mark.slow
def test_a_byte_order_mark_makes_no_fake_word_or_class(tmp_path):
    rng = random.Random(3)
    words = "cat dog bird fish horse cow".split()
    lines = [f"{'animal' if i % 2 else 'pet'}\t" + " ".join(rng.choice(words) for _ in range(5)) for i in range(128)]
    files = _files(tmp_path, lines, lines[:40], bom=True)
    assert _train(tmp_path, files, "data.labelled=true", name="bom") == 0
    run = tmp_path / "runs" / "bom"
    assert json.loads((run / "labels.json").read_text())["labels"] == ["animal", "pet"]
    vocabulary = json.loads((run / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert not any("\ufeff" in word for word in vocabulary)


def test_file_evaluation_splits_as_asked_and_says_how(tmp_path, capsys):
    rng = random.Random(4)
    lines = _sentences(rng, CHINESE[:40], 50)
    path = tmp_path / "zh.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scores = {}
    for tokenize in ("char", None):
        out = tmp_path / f"{tokenize}.json"
        extra = ["--tokenize", tokenize] if tokenize else []
        assert main(["evaluate", "--samples", str(path), "--references", str(path), "--metrics", "bleu",
                     "--out", str(out), *extra]) == 0
        scores[tokenize] = json.loads(out.read_text())
    assert scores["char"]["tokenization"] == "char" and scores["char"]["bleu-2"] == pytest.approx(1.0)
    assert scores[None]["tokenization"] == "nltk" and scores[None]["bleu-2"] < 0.5  # one "word" per sentence
    assert main(["evaluate", "--samples", str(path), "--references", str(path), "--tokenize", "klingon"]) == 2
    assert "neither nltk, whitespace, char nor a tokenizer directory" in capsys.readouterr().err
