"""The GPT-2 generator (generator.architecture=transformer): its mathematics against transformers' own model,
sampling through the key/value cache against teacher forcing, training, export, pretrained starts, errors."""

import json
import re

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from relgan.cli import main
from relgan.config import GeneratorConfig
from relgan.errors import ConfigError
from relgan.gumbel import gumbel_noise
from relgan.models import TransformerGenerator, build_generator, count_parameters
from relgan.plugins import load_config

from conftest import REPO, SMOKE, SMOKE_TEXT, run_cli

SMOKE_TRANSFORMER = REPO / "configs" / "smoke_transformer.yaml"
CONFIG = GeneratorConfig(architecture="transformer", embedding_dim=16, num_heads=2, num_layers=2, dropout=0.0)
V, T, START = 23, 7, 2


def _generator(seed: int = 0) -> TransformerGenerator:
    torch.manual_seed(seed)
    return build_generator(CONFIG, V, T, START)


def test_teacher_forcing_is_the_gpt2_forward_on_the_shifted_ids():
    gen = _generator()
    twin = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=T, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0))
    twin.load_state_dict(gen.model.state_dict())
    tokens = torch.randint(0, V, (4, T), generator=torch.Generator().manual_seed(1))
    shifted = torch.cat([torch.full((4, 1), START), tokens[:, :-1]], dim=1)
    expected = twin(input_ids=shifted).logits
    torch.testing.assert_close(gen(tokens), expected, rtol=0, atol=0)
    nll = F.cross_entropy(expected.flatten(0, 1), tokens.flatten(), reduction="none").view(4, T)
    torch.testing.assert_close(gen(tokens, mode="nll"), nll)
    # causal: changing the last token changes no prediction (position t reads tokens < t only)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % V
    torch.testing.assert_close(gen(changed), gen(tokens), rtol=0, atol=0)


def test_sampling_through_the_cache_equals_teacher_forcing_on_the_sampled_tokens_values_and_gradients():
    gen = _generator()
    beta = 3.0
    noise = gumbel_noise((5, T, V), generator=torch.Generator().manual_seed(2))
    tokens, relaxed = gen(mode="sample", batch_size=5, beta=beta, noise=noise)
    logits = gen(tokens)
    assert torch.equal(tokens, (logits + noise).argmax(-1)), "the fed-back token is the Gumbel-Max sample"
    teacher = torch.softmax(beta * (logits + noise), dim=-1)
    torch.testing.assert_close(relaxed, teacher, rtol=1e-5, atol=1e-6)
    weights = torch.randn(5, T, V, generator=torch.Generator().manual_seed(3))
    cached = torch.autograd.grad((relaxed * weights).sum(), list(gen.parameters()))
    full = torch.autograd.grad((teacher * weights).sum(), list(gen.parameters()))
    for (name, _), a, b in zip(gen.named_parameters(), cached, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_the_generator_step_reaches_every_transformer_weight():
    gen = _generator()
    _, relaxed = gen(mode="sample", batch_size=6, beta=2.0)
    (relaxed * torch.randn_like(relaxed)).sum().backward()
    names = [name for name, _ in gen.named_parameters()]
    assert any(".h.1." in name for name in names) and any("wpe" in name for name in names)
    for name, param in gen.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_text_sampling_follows_the_model_and_is_seeded():
    gen = _generator().eval()
    draw = gen.sample_tokens(4000, generator=torch.Generator().manual_seed(4))
    again = gen.sample_tokens(4000, generator=torch.Generator().manual_seed(4))
    assert torch.equal(draw, again)
    first = torch.softmax(gen(draw[:1])[0, 0], -1)  # p(x_0) does not depend on the tokens
    counts = torch.bincount(draw[:, 0], minlength=V).double()
    expected = 4000 * first.double()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 60, chi2  # 22 degrees of freedom: P(chi2 > 60) < 1e-4


def test_a_few_mle_steps_lower_the_loss():
    gen = _generator()
    corpus = torch.randint(0, 5, (16, T), generator=torch.Generator().manual_seed(5))
    optimizer = torch.optim.Adam(gen.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = gen(corpus, mode="nll").mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_parameter_count_is_gpt2s_with_tied_embeddings():
    gen = _generator()
    width, layers = 16, 2
    block = 2 * (2 * width) + (width * 3 * width + 3 * width) + (width * width + width) \
        + (width * 4 * width + 4 * width) + (4 * width * width + width)
    assert count_parameters(gen) == V * width + T * width + layers * block + 2 * width


def test_heads_that_do_not_divide_the_width_are_a_config_error():
    message = "generator.num_heads = 3 must divide generator.embedding_dim = 16"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(SMOKE_TRANSFORMER, ["generator.num_heads=3"])


def test_context_shorter_than_the_measured_sentence_length_is_a_config_error(tmp_path, capsys):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("a b c d e f\nb c\n" * 20)
    test.write_text("a b\n")
    args = ["train", "--config", str(SMOKE_TEXT), f"data.train_file={train}", f"data.test_file={test}",
            "generator.architecture=transformer", "generator.context_length=4", f"run.output_dir={tmp_path}"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: generator.context_length: the transformer has 4 positions, fewer than the sentence length T = 6; "
        "raise the context or shorten the sentences (data.seq_len)")
    assert main(["train", "--config", str(SMOKE_TRANSFORMER), "generator.context_length=7",
                 f"run.output_dir={tmp_path}"]) == 2
    assert "the transformer has 7 positions, fewer than the sentence length T = 8" in capsys.readouterr().err


@pytest.mark.slow
def test_switching_architecture_on_the_command_line_resets_the_files_rmc_keys(tmp_path, caplog):
    config = load_config(SMOKE, ["generator.architecture=transformer"])
    assert config.generator.head_size == GeneratorConfig().head_size
    assert "generator.head_size = 16 (config file) has no effect" in caplog.text
    with pytest.raises(ConfigError, match=re.escape("generator.head_size = 16 has no effect")):
        load_config(SMOKE_TRANSFORMER, ["generator.head_size=16"])
    assert main(["train", "--config", str(SMOKE), "generator.architecture=transformer",
                 f"run.output_dir={tmp_path}", "run.name=switched", "adversarial.steps=2"]) == 0
    assert json.loads((tmp_path / "switched" / "model.json").read_text())["transformer"]["n_embd"] == 8


def _text_files(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    words = "a man rides a bike down the street . two dogs play in the park with a ball".split()
    rng = torch.Generator().manual_seed(6)
    lines = [" ".join(words[i] for i in torch.randint(0, len(words), (int(n),), generator=rng).tolist())
             for n in torch.randint(3, 9, (96,), generator=rng)]
    train.write_text("\n".join(lines[:64]) + "\n")
    test.write_text("\n".join(lines[64:]) + "\n")
    return train, test


@pytest.mark.slow
def test_text_run_exports_and_samples_with_its_saved_tokenizer(tmp_path):
    train, test = _text_files(tmp_path)
    assert main(["train", "--config", str(SMOKE_TEXT), f"data.train_file={train}", f"data.test_file={test}",
                 "generator.architecture=transformer", "generator.embedding_dim=16", f"run.output_dir={tmp_path}",
                 "run.name=t", "adversarial.steps=2"]) == 0
    run = tmp_path / "t"
    card = json.loads((run / "model.json").read_text())
    assert card["transformer"]["model_type"] == "gpt2" and card["transformer"]["n_embd"] == 16
    result = run_cli("sample", "--run", str(run), "--num", "20", "--out", str(tmp_path / "s.txt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "s.txt").read_text().splitlines()
    vocabulary = set(AutoTokenizer.from_pretrained(run / "tokenizer").get_vocab())
    assert len(lines) == 20 and all(set(line.split()) <= vocabulary for line in lines)


def _pretrained_directory(tmp_path, train):
    """A tiny random GPT-2 and a byte-level BPE tokenizer trained on the training text, saved as a user would."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(train.read_text().splitlines(), vocab_size=300, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>")
    torch.manual_seed(7)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2))
    directory = tmp_path / "gpt2-tiny"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, model, tokenizer


@pytest.mark.slow
def test_a_pretrained_directory_gives_the_weights_and_the_tokenizer_of_the_run(tmp_path):
    from relgan.assembly import setup

    train, test = _text_files(tmp_path)
    directory, model, tokenizer = _pretrained_directory(tmp_path, train)
    config = load_config(SMOKE_TEXT, [f"data.train_file={train}", f"data.test_file={test}",
                                      "generator.architecture=transformer", f"generator.pretrained={directory}",
                                      f"run.output_dir={tmp_path}", "run.name=p"])
    trainer = setup(config)
    assert trainer.corpus.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert trainer.corpus.eos_id == trainer.corpus.start_id == tokenizer.eos_token_id
    assert trainer.disc.embedding.shape[0] == len(tokenizer)
    for key, value in model.state_dict().items():
        assert torch.equal(trainer.gen.model.state_dict()[key], value), key
    line = test.read_text().splitlines()[0]
    ids = trainer.corpus.test_ids[0]
    assert ids[: len(tokenizer(line)["input_ids"])].tolist() == tokenizer(line)["input_ids"]
    assert AutoTokenizer.from_pretrained(tmp_path / "p" / "tokenizer").get_vocab() == tokenizer.get_vocab()
    trainer.fit()
    samples = run_cli("sample", "--run", str(tmp_path / "p"), "--num", "5", "--out", str(tmp_path / "s.txt"),
                      cwd=tmp_path)
    assert samples.returncode == 0, samples.stderr
    assert len((tmp_path / "s.txt").read_text().splitlines()) == 5
    report = tmp_path / "report.json"
    assert main(["evaluate", "--run", str(tmp_path / "p"), "--metrics", "bleu,nll_test", "--num-samples", "16",
                 "--out", str(report)]) == 0
    assert json.loads(report.read_text())["nll_test"] > 0


def test_pretrained_directory_errors_are_one_line(tmp_path, capsys):
    train, test = _text_files(tmp_path)
    base = ["train", "--config", str(SMOKE_TEXT), f"data.train_file={train}", f"data.test_file={test}",
            "generator.architecture=transformer", f"run.output_dir={tmp_path}"]

    def last_error_line(*extra):
        assert main([*base, *extra]) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert last_error_line(f"generator.pretrained={tmp_path / 'nowhere'}").startswith(
        "error: generator.pretrained: no such directory")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "holds a 'bert' model; the transformer generator is GPT-2" in last_error_line(
        f"generator.pretrained={other}")
    assert "generator.num_layers = 4 has no effect with generator.pretrained" in last_error_line(
        f"generator.pretrained={other}", "generator.num_layers=4")


@pytest.mark.slow
def test_resume_from_an_earlier_checkpoint_ends_where_the_uninterrupted_run_ends(tmp_path):
    import shutil

    from safetensors.torch import load_file

    from relgan.checkpoint import complete_checkpoints

    assert main(["train", "--config", str(SMOKE_TRANSFORMER), f"run.output_dir={tmp_path}", "run.name=full"]) == 0
    full, cut = tmp_path / "full", tmp_path / "cut"
    shutil.copytree(full, cut)
    checkpoints = complete_checkpoints(cut)
    for later in checkpoints[checkpoints.index(next(c for c in checkpoints if "00000019" in c.name)) + 1:]:
        shutil.rmtree(later)
    shutil.rmtree(cut / "generator")
    assert main(["train", "--config", str(SMOKE_TRANSFORMER), f"run.output_dir={tmp_path}", "run.name=cut",
                 "--resume"]) == 0
    for name in ("generator/model.safetensors", f"checkpoints/{checkpoints[-1].name}/model_1.safetensors"):
        expected, resumed = load_file(str(full / name)), load_file(str(cut / name))
        assert expected.keys() == resumed.keys()
        for key in expected:
            assert torch.equal(expected[key], resumed[key]), (name, key)
    # a checkpoint holds the tied embedding under one name only (accelerate drops the alias): it still loads
    from relgan.checkpoint import load_generator

    last = complete_checkpoints(full)[-1]
    exported, _, _ = load_generator(full)
    from_checkpoint, _, _ = load_generator(full, last)
    assert "model.lm_head.weight" not in load_file(str(last / "model.safetensors"))
    for key, value in exported.state_dict().items():
        assert torch.equal(from_checkpoint.state_dict()[key], value), key


def test_evaluation_samples_with_dropout_off_and_training_resumes_with_it_on(tmp_path):
    from relgan.assembly import setup

    trainer = setup(load_config(SMOKE_TRANSFORMER, ["generator.dropout=0.5", f"run.output_dir={tmp_path}"]))
    modes = []
    sample_tokens = trainer.gen.sample_tokens

    def recording(*args, **kwargs):
        modes.append(trainer.gen.model.training)
        return sample_tokens(*args, **kwargs)

    trainer.gen.sample_tokens = recording
    trainer.evaluation_report("mle", 0)
    assert modes and not any(modes)
    assert trainer.gen.training and trainer.gen.model.training
