"""Class-conditional generation: labelled data, conditional models, per-class sampling and evaluation."""

import json
import random
import re

import pytest
import torch

from relgan.cli import main
from relgan.config import DiscriminatorConfig, GeneratorConfig
from relgan.errors import ConfigError
from relgan.metrics.classifier import ClassifierSpec, SentenceClassifier, class_accuracy
from relgan.models import Discriminator, build_generator
from relgan.plugins import load_config

from conftest import SMOKE_TEXT

V, T, START = 30, 6, 0
ANIMALS = "cat dog cow horse sheep goat bird fish".split()
MACHINES = "car bus train plane truck boat bike tram".split()


def _sentences(words: list[str], count: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 6))) for _ in range(count)]


def _labelled_files(tmp_path, train_per_class: int = 64, test_per_class: int = 16, extra_test: str = ""):
    """Two classes of disjoint vocabulary, alternating lines (label<TAB>sentence)."""
    rng = random.Random(0)
    paths = {}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        animals, machines = _sentences(ANIMALS, count, rng), _sentences(MACHINES, count, rng)
        lines = [f"{label}\t{text}" for pair in zip(animals, machines, strict=True)
                 for label, text in zip(("animal", "machine"), pair, strict=True)]
        path = tmp_path / f"{split}.txt"
        path.write_text("\n".join(lines) + "\n" + (extra_test if split == "test" else ""))
        paths[split] = path
    return paths


def _train(tmp_path, *overrides: str, name: str = "c", files=None) -> int:
    files = files or _labelled_files(tmp_path)
    return main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}",
                 f"data.train_file={files['train']}", f"data.test_file={files['test']}", "data.labelled=true",
                 *overrides])


@pytest.mark.parametrize("architecture", ["rmc", "lstm", "transformer"])
def test_a_conditional_generator_depends_on_the_label(architecture):
    torch.manual_seed(0)
    config = GeneratorConfig(architecture=architecture, embedding_dim=8, num_heads=2, head_size=4, hidden_size=8,
                             num_layers=1, dropout=0.0)
    generator = build_generator(config, V, T, START, num_classes=2).eval()
    tokens = torch.randint(V, (3, T))
    zeros, ones = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    assert not torch.allclose(generator(tokens, labels=zeros), generator(tokens, labels=ones))
    noise = -torch.log(-torch.log(torch.rand(3, T, V)))
    _, soft_a = generator(mode="sample", batch_size=3, beta=2.0, noise=noise, labels=zeros)
    _, soft_b = generator(mode="sample", batch_size=3, beta=2.0, noise=noise, labels=ones)
    assert not torch.allclose(soft_a, soft_b)
    with pytest.raises(ValueError, match="pass labels"):
        generator(tokens)


@pytest.mark.parametrize("architecture", ["rmc", "lstm", "transformer"])
def test_an_unconditional_generator_is_the_conditional_one_without_its_class_term(architecture):
    config = GeneratorConfig(architecture=architecture, embedding_dim=8, num_heads=2, head_size=4, hidden_size=8,
                             num_layers=1, dropout=0.0)
    torch.manual_seed(0)
    plain = build_generator(config, V, T, START).eval()
    torch.manual_seed(0)
    conditional = build_generator(config, V, T, START, num_classes=2).eval()
    shared = {k: v for k, v in conditional.state_dict().items() if k != "class_embedding"}
    assert set(shared) == set(plain.state_dict())  # the class embedding is the only new weight ...
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())  # ... created after the others
    with torch.no_grad():
        conditional.class_embedding.zero_()
    tokens = torch.randint(V, (3, T))
    labels = torch.tensor([0, 1, 1])
    assert torch.equal(conditional(tokens, labels=labels), plain(tokens))
    rng_a, rng_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(conditional.sample_tokens(3, generator=rng_a, labels=labels),
                       plain.sample_tokens(3, generator=rng_b))
    with pytest.raises(ValueError, match="unconditional"):
        plain(tokens, labels=labels)


def test_the_projection_term_and_its_gradient_reach_the_class_embeddings():
    torch.manual_seed(0)
    config = DiscriminatorConfig(embedding_dim=4, num_representations=2, filter_sizes=[2], num_filters=3,
                                 hidden_size=5, dropout=0.0)
    disc = Discriminator(config, V, T, num_classes=3).eval()
    with torch.no_grad():
        disc.class_embedding.normal_()
    ids = torch.randint(V, (4, T))
    labels = torch.tensor([0, 1, 0, 1])
    (logits,) = disc(ids, labels=(labels,))
    # the logit of class c minus that of class c' is <E_c - E_c', features>, per representation
    (other,) = disc(ids, labels=(1 - labels,))
    features = {}
    disc.hidden.register_forward_hook(lambda module, inputs, output: features.update(x=inputs[0]))
    disc(ids, labels=(labels,))
    rows = labels.repeat_interleave(2)
    expected = ((disc.class_embedding[rows] - disc.class_embedding[1 - rows]) * features["x"]).sum(-1)
    assert torch.allclose(logits - other, expected, atol=1e-6)
    logits.sum().backward()
    grad = disc.class_embedding.grad
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    assert torch.equal(grad[2], torch.zeros_like(grad[2]))  # no sentence of class 2
    with pytest.raises(ValueError, match="pass labels"):
        disc(ids)


@pytest.mark.slow
def test_a_conditional_run_trains_samples_each_class_and_evaluates_per_class(tmp_path, capsys):
    assert _train(tmp_path, "mle.epochs=3", "eval.metrics=[bleu,nll_gen,nll_test]") == 0
    run = tmp_path / "runs" / "c"
    assert json.loads((run / "labels.json").read_text()) == {"labels": ["animal", "machine"]}
    assert (run / "generator" / "labels.json").read_text() == (run / "labels.json").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["g_loss"] for r in records if r.get("phase") == "mle" and "g_loss" in r]
    assert losses[-1] < losses[0]
    last = records[-1]
    assert set(last["per_class"]) == {"animal", "machine"} and last["conditional"] is True
    for key in ("bleu-2", "nll_test", "class_accuracy"):
        mean = sum(r[key] for r in last["per_class"].values()) / 2
        assert last[key] == pytest.approx(mean)
    assert last["classifier_test_accuracy"] == 1.0  # disjoint vocabularies
    capsys.readouterr()
    assert main(["sample", "--run", str(run / "generator"), "--label", "machine", "--num", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert main(["sample", "--run", str(run), "--num", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["animal"] * 3 + ["machine"] * 3
    # the same seed and class give the same sentences, by name or in turn
    assert main(["sample", "--run", str(run), "--label", "machine", "--num", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [line.split("\t", 1)[1] for line in lines[3:]]
    assert main(["evaluate", "--run", str(run), "--metrics", "bleu,nll_test", "--num-samples", "20"]) == 0
    out = capsys.readouterr().out
    assert "animal/bleu-2" in out and "class_accuracy" in out


def test_sample_rejects_an_unknown_label_in_one_line_naming_the_known_ones(tmp_path, capsys):
    assert _train(tmp_path, "mle.epochs=1", "adversarial.steps=0", "eval.metrics=[nll_test]") == 0
    capsys.readouterr()
    assert main(["sample", "--run", str(tmp_path / "runs" / "c"), "--label", "plants"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"error: --label 'plants': not a class of {tmp_path / 'runs' / 'c'}; its labels are animal, machine"]


@pytest.mark.slow
def test_labels_ignored_by_unconditional_models_change_nothing(tmp_path):
    """condition_on_labels=false trains exactly the run of the same sentences without labels."""
    files = _labelled_files(tmp_path)
    plain = {split: tmp_path / f"plain-{split}.txt" for split in files}
    for split, path in files.items():
        plain[split].write_text("".join(line.split("\t", 1)[1] + "\n" for line in path.read_text().splitlines()))
    common = ["adversarial.steps=3", "eval.metrics=[nll_gen,nll_test]"]
    assert _train(tmp_path, *common, "data.condition_on_labels=false", name="ignored", files=files) == 0
    assert main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path / 'runs'}", "run.name=plain",
                 f"data.train_file={plain['train']}", f"data.test_file={plain['test']}", *common]) == 0

    def losses(name):
        rows = [json.loads(line) for line in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        return [(r.get("g_loss"), r.get("d_loss")) for r in rows if "g_loss" in r]

    assert losses("ignored") == losses("plain") and losses("plain")
    last = json.loads((tmp_path / "runs" / "ignored" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["conditional"] is False and set(last["per_class"]) == {"animal", "machine"}


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_every_loss_trains_a_conditional_pair(tmp_path, loss):
    assert _train(tmp_path, "mle.epochs=1", "adversarial.steps=2", f"adversarial.loss={loss}",
                  "eval.metrics=[nll_test]") == 0


def _last_error(capsys, train, test) -> str:
    code = main(["train", "--config", str(SMOKE_TEXT), f"data.train_file={train}", f"data.test_file={test}",
                 "data.labelled=true", "--dry-run"])
    assert code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_labelled_data_errors_are_one_line(tmp_path, capsys):
    files = _labelled_files(tmp_path)
    broken = tmp_path / "broken.txt"
    broken.write_text(files["train"].read_text() + "a sentence without a label\n")
    assert _last_error(capsys, broken, files["test"]) == (
        "error: data.train_file line 129: no label; with data.labelled=true every line is `label<TAB>sentence`")
    unknown = _labelled_files(tmp_path, extra_test="plant\ta tree\n")
    assert _last_error(capsys, unknown["train"], unknown["test"]) == (
        "error: data.test_file: label 'plant' does not occur in the training split; known labels: animal, machine")
    small = _labelled_files(tmp_path, train_per_class=20)
    assert f"{small['train']}: class 'animal' has 20 training sentences, fewer than one batch (32)" in _last_error(
        capsys, small["train"], small["test"])
    lonely = tmp_path / "lonely.txt"
    lonely.write_text("animal\tcat dog\n")
    assert _last_error(capsys, files["train"], lonely) == (
        "error: data.test_file: class 'machine' has no test sentences; per-class evaluation needs them as "
        "references: add some, or drop the class from the training split")


def test_condition_on_labels_without_labelled_data_is_an_error():
    with pytest.raises(ConfigError, match=re.escape("data.condition_on_labels = False has no effect")):
        load_config(SMOKE_TEXT, ["data.train_file=a", "data.test_file=b", "data.condition_on_labels=false"])


def test_class_accuracy_is_one_where_the_classifier_is_right_and_chance_on_shuffled_labels():
    rng = random.Random(1)
    train = _sentences(ANIMALS, 200, rng) + _sentences(MACHINES, 200, rng)
    labels = torch.tensor([0] * 200 + [1] * 200)
    spec = ClassifierSpec(embedding_dim=16, num_filters=16, lr=1e-2)
    classifier = SentenceClassifier.untrained(train, ["animal", "machine"], spec).fit(train, labels)
    test = _sentences(ANIMALS, 300, rng) + _sentences(MACHINES, 300, rng)
    truth = torch.tensor([0] * 300 + [1] * 300)
    right = [s for s, y, p in zip(test, truth.tolist(), classifier.predict(test).tolist(), strict=True) if y == p]
    assert len(right) > 550
    assert class_accuracy(classifier, [s for s in right if s.split()[0] in ANIMALS], 0) == 1.0
    assert class_accuracy(classifier, [s for s in right if s.split()[0] in MACHINES], 1) == 1.0
    shuffled = truth[torch.randperm(600, generator=torch.Generator().manual_seed(0))]
    # 600 labels at random: the accuracy is Binomial(600, 1/2) / 600, std 0.02
    assert abs(classifier.accuracy(test, shuffled) - 0.5) < 0.08


def test_a_hub_dataset_label_column_gives_its_class_names(tmp_path):
    """data.label_column on a dataset in the Hugging Face format (local parquet files, nothing downloaded)."""
    from datasets import ClassLabel, Dataset, Features, Value

    from relgan.data import load_corpus

    rng = random.Random(2)
    features = Features({"sentence": Value("string"), "kind": ClassLabel(names=["machine", "animal"])})
    for split, count in (("train", 8), ("test", 4)):
        rows = {"sentence": _sentences(ANIMALS, count, rng) + _sentences(MACHINES, count, rng),
                "kind": [1] * count + [0] * count}
        Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    config = load_config(None, ["data.source=hub", f"data.dataset={tmp_path}", "data.text_column=sentence",
                                "data.label_column=kind"]).data
    corpus = load_corpus(config)
    assert corpus.label_names == ["animal", "machine"]  # the ClassLabel's names, sorted into ids
    assert corpus.train_labels.tolist() == [0] * 8 + [1] * 8 and corpus.test_labels.tolist() == [0] * 4 + [1] * 4
    assert all(s.split()[0] in ANIMALS for s in corpus.of_class(0).train_text)


def test_a_resumed_run_keeps_its_classes(tmp_path, capsys):
    files = _labelled_files(tmp_path)
    assert _train(tmp_path, "mle.epochs=1", "adversarial.steps=0", "eval.metrics=[nll_test]", files=files) == 0
    renamed = {split: tmp_path / f"renamed-{split}.txt" for split in files}
    for split, path in files.items():
        renamed[split].write_text(path.read_text().replace("machine\t", "vehicle\t"))
    capsys.readouterr()
    assert _train(tmp_path, "mle.epochs=2", "adversarial.steps=0", "eval.metrics=[nll_test]", "--resume",
                  files=renamed) == 2
    assert "the run was trained on the classes animal, machine but the data has animal, vehicle" in \
        capsys.readouterr().err


def test_each_class_is_scored_against_its_own_label(tmp_path, monkeypatch):
    """The evaluation wires class c's samples to label c: samples that are their class's own test sentences
    score class_accuracy 1 for every class (and 0 for a class scored against another label)."""
    import relgan.evaluation as evaluation
    from relgan.data import load_corpus
    from relgan.plugins import load_config

    files = _labelled_files(tmp_path, train_per_class=200, test_per_class=64)
    config = load_config(SMOKE_TEXT, [f"data.train_file={files['train']}", f"data.test_file={files['test']}",
                                      "data.labelled=true"])
    corpus = load_corpus(config.data)
    scoring = evaluation.CorpusEvaluation(corpus, "relgan", [2], ["nll_test"])

    def own_test_sentences(generator, part, metrics, **options):  # class c's "samples": its real test sentences
        return {}, part.test_text

    monkeypatch.setattr(evaluation, "generator_report", own_test_sentences)
    monkeypatch.setattr(evaluation.CorpusEvaluation, "classifier", lambda self: _perfect_classifier(corpus))
    scoring._classifier_test_accuracy = 1.0
    generator = type("Conditional", (), {"num_classes": 2})()
    report, _ = scoring(generator, ["nll_test"], num_samples=8, batch_size=8, seed=0, nll_batch_size=8)
    assert [report["per_class"][name]["class_accuracy"] for name in corpus.label_names] == [1.0, 1.0]


def _perfect_classifier(corpus):
    """A classifier that knows every sentence's class by its first word."""
    classes = {name: index for index, name in enumerate(corpus.label_names)}

    class Perfect:
        def predict(self, sentences):
            return torch.tensor([classes["animal"] if s.split()[0] in ANIMALS else classes["machine"]
                                 for s in sentences])

        spec = type("Spec", (), {"describe": lambda self: "perfect"})()

    return Perfect()


@pytest.mark.slow
def test_the_conditional_table_scores_real_text_per_class_and_refuses_mixed_signatures(tmp_path):
    """The real-text row scores each class's own training sentences against that class's test sentences (BLEU
    near 1 for test sentences as hypotheses, 0 for the other class's) and the classifier on the class's test
    sentences; runs whose metrics were computed two ways do not go into one table."""
    from experiments.conditional_table import main as table
    from experiments.conditional_table import real_text_row
    from relgan.errors import RelganError

    files = _labelled_files(tmp_path)
    for name, samples in (("c", 20), ("more", 24)):
        assert _train(tmp_path, "mle.epochs=1", "adversarial.steps=0", "eval.metrics=[bleu,self_bleu]",
                      f"eval.num_samples={samples}", name=name, files=files) == 0
    run = tmp_path / "runs" / "c"
    real = real_text_row(run, 20)
    for name in ("animal", "machine"):
        assert 0.3 < real[f"{name}/bleu-2"] and real[f"{name}/bleu-4"] < 0.99
        assert real[f"{name}/class_accuracy"] == 1.0  # disjoint vocabularies
        assert real["signatures"][f"{name}/bleu"].startswith("bleu|proto:relgan|hyp:20|")
    out = tmp_path / "table"
    table(["--runs", str(run), "--command", "test", "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    assert [row["model"] for row in result["rows"]] == ["conditional", "real text"]
    assert result["signatures"]["animal/self_bleu"] in out.with_suffix(".md").read_text()
    with pytest.raises(RelganError, match="animal/bleu was computed two ways"):
        table(["--runs", str(run), str(tmp_path / "runs" / "more"), "--command", "test", "--out", str(out)])
