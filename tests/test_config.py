import dataclasses

import pytest
import yaml

from relgan.config import Config, save_config
from relgan.errors import ConfigError
from relgan.plugins import describe_keys, load_config

from conftest import REPO


def test_defaults_follow_the_official_scripts():
    c = Config()
    g = c.generator
    assert (g.mem_slots, g.num_heads, g.head_size, g.embedding_dim) == (1, 2, 256, 32)
    assert (c.discriminator.embedding_dim, c.discriminator.num_representations) == (64, 64)
    assert c.discriminator.filter_sizes == [2, 3, 4, 5] and c.discriminator.num_filters == 300
    assert (c.mle.lr, c.adversarial.g_lr, c.adversarial.d_lr, c.mle.grad_clip) == (1e-2, 1e-4, 1e-4, 5.0)
    assert (c.adversarial.g_steps, c.adversarial.d_steps, c.adversarial.loss) == (1, 5, "rsgan")


def test_yaml_round_trip(tmp_path):
    config = load_config(REPO / "configs" / "coco_relgan100.yaml", ["adversarial.steps=500", "adversarial.d_lr=3e-4"])
    assert config.adversarial.steps == 500 and config.adversarial.d_lr == 3e-4
    assert config.run.name == "coco_relgan100"
    save_config(config, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert dataclasses.asdict(again) == dataclasses.asdict(config)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_config_loads(name):
    load_config(REPO / "configs" / name)


def test_overrides_parse_types():
    c = load_config(None, ["discriminator.filter_sizes=2,3", "gumbel.horizon=null", "mle.shuffle=true",
                           "eval.metrics=[nll_test, nll_gen]", "run.name=x",
                           "run.mixed_precision=no", "gumbel.schedule=no"])
    assert c.discriminator.filter_sizes == [2, 3]
    assert c.gumbel.horizon is None and c.mle.shuffle is True
    assert c.eval.metrics == ["nll_test", "nll_gen"] and c.run.name == "x"
    assert c.run.mixed_precision == "no" and c.gumbel.schedule == "no"  # not YAML's boolean False


@pytest.mark.parametrize("override, expected", [
    ("adversarial.stpes=5", "unknown key 'adversarial.stpes' (did you mean 'adversarial.steps'?)"),
    ("advesarial.steps=5", "unknown key 'advesarial'"),
    ("adversarial.steps=many", "adversarial.steps must be an integer, got 'many'"),
    ("adversarial.steps=2.5", "adversarial.steps must be an integer"),
    ("mle.lr=-0.1", "mle.lr = -0.1 is out of range; it must be > 0.0"),
    ("gumbel.beta_max=0.5", "gumbel.beta_max = 0.5 is out of range; it must be >= 1.0"),
    ("gumbel.schedule=cosine", "gumbel.schedule = 'cosine' is not allowed; choose one of: no, lin, exp, log, sigmoid"),
    ("adversarial.loss=wgan", "adversarial.loss = 'wgan' is not allowed; choose one of: rsgan, standard, js"),
    ("generator.architecture=gru", "generator.architecture = 'gru' is not allowed; choose one of: rmc, lstm"),
    ("eval.metrics=[bleu, rouge]", "eval.metrics contains 'rouge'; allowed values: bleu, bw_bleu, self_bleu"),
    ("mle.shuffle=maybe", "mle.shuffle must be true or false"),
    ("mle.batch_size=0", "mle.batch_size = 0 is out of range; it must be >= 1"),
    ("discriminator.dropout=1", "discriminator.dropout = 1.0 is out of range; it must be < 1.0"),
    ("generator=3", "'generator' must be a mapping"),
    ("data.source=files", "data.train_file is required when data.source is 'files'"),
    ("gumbel.horizon=10", "gumbel.horizon = 10 is smaller than adversarial.steps = 2000"),
    ("discriminator.embedding_dim=100", "must be a multiple of discriminator.num_representations"),
    ("steps", "override 'steps' must look like section.key=value"),
])
def test_invalid_values_are_one_line_errors_naming_the_key(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_zero_steps_everywhere_is_an_error():
    with pytest.raises(ConfigError, match="nothing to train"):
        load_config(None, ["mle.epochs=0", "adversarial.steps=0"])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mle: {epochs: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line \d"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(listing)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"mle": {"epochs": "ten"}}))
    with pytest.raises(ConfigError, match=r"wrong.yaml: mle.epochs must be an integer, got 'ten'"):
        load_config(wrong)


def _leaf_keys(node, prefix=""):
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        if dataclasses.is_dataclass(value):
            yield from _leaf_keys(value, f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}"


def test_help_lists_every_key():
    text = describe_keys()
    keys = list(_leaf_keys(Config()))
    assert len(keys) > 50 and "data.oracle.vocab_size" in keys
    for key in keys:
        assert f"  {key} (" in text


@pytest.mark.parametrize("overrides, key, remedy", [
    (["data.train_file=mine.txt", "data.test_file=mine_test.txt"], "data.train_file", "data.source=files"),
    (["data.dataset=ptb_text_only"], "data.dataset", "data.source=hub"),
    (["data.source=files", "data.train_file=a", "data.test_file=b", "data.oracle.vocab_size=7"],
     "data.oracle.vocab_size", "data.source=oracle"),
    (["data.seq_len=30"], "data.seq_len", "data.source=files or hub"),
    (["generator.architecture=lstm", "generator.head_size=64"], "generator.head_size", "generator.architecture=rmc"),
    (["generator.hidden_size=64"], "generator.hidden_size", "generator.architecture=lstm"),
    (["adversarial.gp_weight=5"], "adversarial.gp_weight", "adversarial.loss=wgan-gp"),
    (["gumbel.schedule=no", "gumbel.horizon=5000"], "gumbel.horizon", "a schedule that rises"),
    (["mle.patience=3"], "mle.patience", "data.validation_size > 0"),
    (["adversarial.patience=3"], "adversarial.patience", "data.validation_size > 0"),
])
def test_a_key_without_effect_is_an_error_that_names_what_would_make_it_count(overrides, key, remedy):
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs" / "demo.yaml", overrides)
    message = str(info.value)
    assert message.startswith(f"{key} = ") and "has no effect with" in message and remedy in message


def test_keys_at_their_defaults_and_keys_that_count_are_accepted(tmp_path):
    # a saved run's config lists every key; those of other settings sit at their defaults
    config = load_config(REPO / "configs" / "demo.yaml", ["gumbel.schedule=no", "adversarial.loss=wgan-gp",
                                                          "adversarial.gp_weight=5"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml").adversarial.gp_weight == 5.0
    files = load_config(None, ["data.source=files", "data.train_file=a.txt", "data.test_file=b.txt", "data.seq_len=9"])
    assert files.data.train_file == "a.txt" and files.data.seq_len == 9
