"""Typed experiment configuration: dataclasses loaded from YAML with dotted command-line overrides.

Every field carries its help text and constraints in ``metadata`` so that validation, error messages and
``relgan train --help`` all come from one place.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import types
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relgan.errors import ConfigError

logger = logging.getLogger("relgan")

SCHEDULES = ("no", "lin", "exp", "log", "sigmoid", "quad", "sqrt", "learned")
GAN_LOSSES = ("rsgan", "standard", "js", "kl", "hinge", "tv", "ls", "wgan-gp")
ARCHITECTURES = ("rmc", "lstm", "transformer")
PROTOCOLS = ("relgan", "texygen", "full")
BACKENDS = ("auto", "reference", "fast")
REPLICA_MODES = ("auto", "sequential", "batched")
# how the generator gets its gradient: one module each in relgan/algorithms
ALGORITHMS = ("relgan", "straight-through", "gumbel-rao", "seqgan", "maligan")
RELAXED_ALGORITHMS = ("relgan", "straight-through", "gumbel-rao")  # the discriminator sees softmax(beta (o + g))
BASELINES = ("none", "mean")
TOKENIZATIONS = ("nltk", "whitespace", "char", "bpe")


def metric_names() -> tuple[str, ...]:
    """The metrics of relgan.metrics.registry (read when a config is checked: the registry imports the models,
    which import this module)."""
    from relgan.metrics.registry import metric_names as names

    return names()


def _field(default: Any, help: str, **constraints: Any) -> Any:
    """A dataclass field with help text and constraints (choices, min, gt, lt, max, item_choices)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **constraints})
    return field(default=default, metadata={"help": help, **constraints})


def _section(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


@dataclass
class OracleConfig:
    vocab_size: int = _field(5000, "vocabulary size of the synthetic oracle LSTM", min=2)
    seq_len: int = _field(20, "length of every oracle sequence (the paper uses 20 and 40)", min=2)
    embedding_dim: int = _field(32, "oracle embedding width", min=1)
    hidden_size: int = _field(32, "oracle LSTM hidden size", min=1)
    num_train: int = _field(10000, "number of oracle training sequences", min=1)
    num_test: int = _field(10000, "number of held-out oracle sequences", min=1)
    seed: int = _field(1234, "seed of the oracle's N(0,1) weights and of its samples", min=0)
    start_token: int = _field(0, "token id fed to the oracle and the generator at the first step", min=0)


@dataclass
class DataConfig:
    source: str = _field("oracle", "where the corpus comes from", choices=("oracle", "files", "hub"))
    train_file: str | None = _field(None, "training text, one sentence per line (source=files)")
    test_file: str | None = _field(None, "test text, one sentence per line (source=files)")
    dataset: str | None = _field(None, "Hugging Face dataset name (source=hub)")
    dataset_config: str | None = _field(None, "Hugging Face dataset configuration name (source=hub)")
    text_column: str = _field("text", "column holding the sentences (source=hub)")
    label_column: str | None = _field(
        None, "column holding each sentence's class; set = a class-conditional run (source=hub)"
    )
    labelled: bool = _field(False, "each line is `label<TAB>sentence`; true = a class-conditional run (source=files)")
    condition_on_labels: bool = _field(
        True,
        "with labelled data: class-conditional models; false = unconditional "
        "models, evaluated per class all the same (the baseline of class_accuracy)",
    )
    train_split: str = _field("train", "training split name (source=hub)")
    test_split: str = _field("test", "test split name (source=hub)")
    tokenization: str = _field(
        "nltk",
        "nltk = lower-case + NLTKWordTokenizer (RelGAN); whitespace = split on spaces; char = characters (a space "
        "between words is a token too); bpe = subwords trained on the training split (any language)",
        choices=TOKENIZATIONS,
    )
    tokenizer: str | None = _field(
        None, "a local directory holding a Hugging Face tokenizer (save_pretrained) to use instead of building one"
    )
    min_frequency: int = _field(1, "tokens seen fewer times in training become <unk> (bpe: merges as rare)", min=1)
    max_vocab_size: int | None = _field(
        None, "keep only the most frequent tokens (specials excluded); bpe: the vocabulary size, null = 8000", min=1
    )
    seq_len: int | None = _field(None, "sentence length T; null = longest training sentence", min=1)
    validation_size: int = _field(
        0,
        "training sentences held out for model selection (never trained on): each evaluation also scores an "
        "independent sample set against them (val/ keys); 0 = none",
        min=0,
    )
    validation_seed: int = _field(0, "which training sentences are held out (data.validation_size)", min=0)
    oracle: OracleConfig = _section(OracleConfig, "synthetic oracle benchmark (source=oracle)")

    @property
    def has_labels(self) -> bool:
        """Whether the sentences carry class labels (and the models condition on them)."""
        return (self.source == "files" and self.labelled) or (self.source == "hub" and self.label_column is not None)


@dataclass
class GeneratorConfig:
    architecture: str = _field("rmc", "relational memory core, LSTM or GPT-2 transformer", choices=ARCHITECTURES)
    embedding_dim: int = _field(32, "token embedding width (transformer: the model width)", min=1)
    mem_slots: int = _field(1, "relational memory slots (rmc)", min=1)
    num_heads: int = _field(2, "attention heads (rmc, transformer)", min=1)
    head_size: int = _field(256, "width of each head; memory width = num_heads * head_size (rmc)", min=1)
    hidden_size: int = _field(32, "LSTM hidden size (lstm)", min=1)
    num_layers: int = _field(2, "transformer blocks (transformer)", min=1)
    context_length: int | None = _field(
        None, "positions the transformer can attend over; null = the sentence length T (transformer)", min=1
    )
    dropout: float = _field(0.1, "dropout of embeddings, attention and residuals (transformer)", min=0.0, lt=1.0)
    pretrained: str | None = _field(
        None, "local directory of a saved GPT-2 model and its tokenizer to start from (transformer; never downloaded)"
    )


@dataclass
class DiscriminatorConfig:
    embedding_dim: int = _field(64, "total embedding width, split into num_representations", min=1)
    num_representations: int = _field(64, "S: embedded representations sharing the CNN", min=1)
    filter_sizes: list[int] = _field([2, 3, 4, 5], "convolution heights over time", min=1)
    num_filters: int = _field(300, "filters per height", min=1)
    filter_counts: list[int] | None = _field(
        None,
        "filters of each height, one per filter_sizes entry (SeqGAN's "
        "100, 200, ..., 160); null = num_filters of every height",
        min=1,
    )
    dropout: float = _field(
        0.25, "dropout before the output layers (always on, as in the official code)", min=0.0, lt=1.0
    )
    hidden_size: int = _field(100, "width of the layer before the logit", min=1)


@dataclass
class GumbelConfig:
    beta_max: float = _field(100.0, "largest inverse temperature beta (paper: 100 or 1000)", min=1.0)
    schedule: str = _field("exp", "how beta rises from 1 to beta_max", choices=SCHEDULES)
    horizon: int | None = _field(
        None, "N in the schedule formulas; null = adversarial.steps (paper), 5000 = official code", min=2
    )
    straight_through: bool = _field(False, "deprecated: adversarial.algorithm=straight-through says the same")


@dataclass
class MLEConfig:
    epochs: int = _field(150, "MLE pretraining epochs", min=0)
    batch_size: int = _field(64, "sentences per batch and process", min=1)
    lr: float = _field(1e-2, "Adam learning rate", gt=0.0)
    grad_clip: float = _field(5.0, "global gradient-norm clip", gt=0.0)
    shuffle: bool = _field(False, "shuffle batches each epoch (official: sequential)")
    eval_every: int = _field(10, "evaluate every k epochs (and at the end of MLE)", min=1)
    checkpoint_every: int = _field(10, "checkpoint every k epochs (and at the end of MLE)", min=1)


@dataclass
class AdversarialConfig:
    algorithm: str = _field(
        "relgan",
        "how the generator gets its gradient: relgan = through softmax(beta (o + g)); "
        "straight-through = one-hot forward, relaxed backward; gumbel-rao = straight-through "
        "with the backward averaged over rao_samples conditional Gumbel draws; seqgan = REINFORCE "
        "with Monte-Carlo rollouts; maligan = REINFORCE with normalised D/(1-D) weights "
        "(docs/algorithms.md)",
        choices=ALGORITHMS,
    )
    rao_samples: int = _field(10, "K: conditional Gumbel draws averaged per token (gumbel-rao)", min=1)
    rollouts: int = _field(16, "N: Monte-Carlo completions per prefix (seqgan; the paper's 16)", min=1)
    baseline: str = _field(
        "none",
        "subtracted from seqgan's rewards: none (the paper) or mean = the mean reward of "
        "the batch's other sentences at the same position",
        choices=BASELINES,
    )
    steps: int = _field(2000, "adversarial iterations; 0 = MLE baseline", min=0)
    batch_size: int = _field(64, "sentences per batch and process", min=1)
    g_steps: int = _field(1, "generator updates per iteration", min=1)
    d_steps: int = _field(5, "discriminator updates per iteration", min=1)
    g_lr: float = _field(1e-4, "generator Adam learning rate", gt=0.0)
    d_lr: float = _field(1e-4, "discriminator Adam learning rate", gt=0.0)
    grad_clip: float = _field(5.0, "global gradient-norm clip", gt=0.0)
    loss: str = _field("rsgan", "GAN loss", choices=GAN_LOSSES)
    gp_weight: float = _field(10.0, "gradient-penalty weight (wgan-gp)", min=0.0)
    eval_every: int = _field(20, "evaluate every k iterations (and at the end)", min=1)
    checkpoint_every: int = _field(100, "checkpoint every k iterations (and at the end)", min=1)


@dataclass
class EvalConfig:
    protocol: str = _field("relgan", "which samples and references BLEU uses", choices=PROTOCOLS)
    metrics: list[str] = _field(
        ["bleu", "nll_gen", "nll_test", "nll_oracle"],
        "metrics computed during training (lm: the LM judges, "
        "which train two small LSTMs per evaluation; fed: FED and MAUVE, with the 'fed' extra)",
        item_choices=metric_names,
    )
    num_samples: int = _field(10000, "sentences sampled at each evaluation", min=1)
    bleu_orders: list[int] = _field([2, 3, 4, 5], "BLEU / Self-BLEU orders", min=1, max=9)
    batch_size: int = _field(1000, "sampling batch size (samples depend on it for a given seed)", min=1)
    print_samples: int = _field(3, "samples printed with each evaluation summary", min=0)


@dataclass
class RunConfig:
    name: str | None = _field(None, "run name; null = the config file's name")
    output_dir: str = _field("runs", "parent folder of run directories")
    seed: int = _field(42, "seed of initialisation, data order and noise", min=0)
    seeds: list[int] | None = _field(
        None,
        "one replica per seed, trained in this process, each in "
        "<run dir>/seed-<s>/ and equal to a run with run.seed = s; null = one run "
        "with run.seed",
        min=0,
    )
    replicas: str = _field(
        "auto",
        "how the replicas of run.seeds train: sequential = one after another; batched = "
        "in lockstep, each step one vmapped pass of the reference models (one process); auto = "
        "sequential, until batched replicas are measured faster somewhere",
        choices=REPLICA_MODES,
    )
    mixed_precision: str = _field("no", "autocast precision", choices=("no", "bf16", "fp16"))
    cpu: bool = _field(False, "force the CPU even when a GPU is present")
    tracker: str = _field(
        "auto",
        "experiment tracker; auto = tensorboard when installed",
        choices=("auto", "none", "tensorboard", "wandb", "mlflow"),
    )
    log_every: int = _field(10, "steps between loss logs and NaN checks", min=1)
    keep_checkpoints: int = _field(3, "complete checkpoints kept on disk", min=1)
    backend: str = _field(
        "auto",
        "reference = relgan/models as written; auto = verified fast paths where they "
        "apply (C++ kernels on CPU), else the reference; fast = auto, but missing kernels are "
        "an error",
        choices=BACKENDS,
    )
    cuda_graphs: bool = _field(True, "replay whole training steps as CUDA graphs (one GPU only; no effect on CPU)")
    num_threads: int | None = _field(None, "torch CPU threads; null = torch's default", min=1)


@dataclass
class Config:
    data: DataConfig = _section(DataConfig, "corpus")
    generator: GeneratorConfig = _section(GeneratorConfig, "generator network")
    discriminator: DiscriminatorConfig = _section(DiscriminatorConfig, "discriminator network")
    gumbel: GumbelConfig = _section(GumbelConfig, "Gumbel-Softmax relaxation and beta schedule")
    mle: MLEConfig = _section(MLEConfig, "MLE pretraining")
    adversarial: AdversarialConfig = _section(AdversarialConfig, "adversarial training")
    eval: EvalConfig = _section(EvalConfig, "evaluation during training")
    run: RunConfig = _section(RunConfig, "run directory, devices, logging")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# loading and validation


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply ``key=value`` overrides, validate."""
    where = str(path) if path is not None else "defaults"
    raw = _read_yaml(Path(path)) if path is not None else {}
    overridden = set()
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value, where="command line")
        overridden.add(key)
    config = _build(Config, raw, prefix="", where=where)
    if config.run.name is None and path is not None:
        config.run.name = Path(path).stem
    _check_run_name(config.run.name)
    _validate(config, overridden)
    return config


def _check_run_name(name: str | None) -> None:
    """A run name is one plain directory name under run.output_dir: --overwrite deletes that directory, and
    nothing outside it. (Replicas live in <name>/seed-<s>, which relgan names itself.)"""
    if name is None:
        return
    if name in ("", ".", "..") or "/" in name or "\\" in name or os.sep in name or Path(name).is_absolute():
        raise ConfigError(
            f"run.name = {name!r} must be a plain directory name (no '.', '..', path separators or absolute "
            "paths); put the parent folder in run.output_dir"
        )


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from relgan.io_utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_from_dict(raw: dict[str, Any], where: str) -> Config:
    """Build and validate a config from an already-parsed mapping (e.g. a run's saved config)."""
    config = _build(Config, raw, prefix="", where=where)
    _validate(config)
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections (data:, generator:, ...)")
    return raw


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like section.key=value (e.g. adversarial.steps=500)")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: '{'.'.join(parts[: depth + 1])}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, where: str) -> Any:
    section = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{section}' must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{hint}; keys in {section}: {', '.join(known)}")
    values = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        key = prefix + name
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw[name], prefix=key + ".", where=where)
        else:
            value = _coerce(raw[name], kind, key, where)
            _check_constraints(value, spec.metadata, key, where)
            values[name] = value
    return cls(**values)


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return f"{_describe(inner[0])} or null"
    if origin is list:
        item = typing.get_args(kind)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(item, str(item))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def _coerce(value: Any, kind: Any, key: str, where: str) -> Any:
    def fail() -> ConfigError:
        return ConfigError(f"{where}: {key} must be {_describe(kind)}, got {value!r}")

    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = next(a for a in typing.get_args(kind) if a is not type(None))
        return _coerce(value, inner, key, where)
    if origin is list:
        item_kind = typing.get_args(kind)[0]
        if isinstance(value, str):
            value = [yaml.safe_load(part) for part in value.split(",") if part.strip()]
        elif not isinstance(value, list):
            value = [value]
        try:
            return [_coerce(item, item_kind, key, where) for item in value]
        except ConfigError:
            raise fail() from None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise fail()
    if kind is int:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return value
        number = _as_number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise fail()
    if kind is float:
        if isinstance(value, bool):
            raise fail()
        number = _as_number(value)
        if number is None:
            raise fail()
        if not math.isfinite(number):  # no key of ours means anything at nan or inf
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return float(number)
    if kind is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/yes (as in mixed_precision: no) as a boolean
            return "yes" if value else "no"
        if isinstance(value, str):
            return value
        raise fail()
    raise fail()


def _as_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _choices(choices: Sequence[str] | Callable[[], Sequence[str]]) -> Sequence[str]:
    return choices() if callable(choices) else choices


def _check_constraints(value: Any, meta: typing.Mapping[str, Any], key: str, where: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    if "item_choices" in meta:
        allowed = _choices(meta["item_choices"])
        for item in items:
            if item not in allowed:
                raise ConfigError(f"{where}: {key} contains {item!r}; allowed values: {', '.join(allowed)}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key} = {value!r} is not allowed; choose one of: {', '.join(meta['choices'])}")
    for item in items:
        if "min" in meta and item < meta["min"]:
            raise ConfigError(f"{where}: {key} = {value!r} is out of range; it must be >= {meta['min']}")
        if "max" in meta and item > meta["max"]:
            raise ConfigError(f"{where}: {key} = {value!r} is out of range; it must be <= {meta['max']}")
        if "gt" in meta and item <= meta["gt"]:
            raise ConfigError(f"{where}: {key} = {value!r} is out of range; it must be > {meta['gt']}")
        if "lt" in meta and item >= meta["lt"]:
            raise ConfigError(f"{where}: {key} = {value!r} is out of range; it must be < {meta['lt']}")


# Keys that only count under some setting: (section, keys, the setting, when it counts, what makes them count)
CONDITIONAL_KEYS: tuple[tuple[str, tuple[str, ...], str, Any, str], ...] = (
    (
        "data",
        ("train_file", "test_file", "labelled"),
        "data.source",
        lambda c: c.data.source == "files",
        "data.source=files",
    ),
    (
        "data",
        ("dataset", "dataset_config", "text_column", "label_column", "train_split", "test_split"),
        "data.source",
        lambda c: c.data.source == "hub",
        "data.source=hub",
    ),
    (
        "data",
        ("condition_on_labels",),
        "data.labelled",
        lambda c: c.data.has_labels,
        "labelled data (data.labelled=true, or data.label_column)",
    ),
    (
        "data",
        ("tokenization", "tokenizer", "min_frequency", "max_vocab_size", "seq_len"),
        "data.source",
        lambda c: c.data.source != "oracle",
        "data.source=files or hub (the oracle's length is data.oracle.seq_len)",
    ),
    (
        "data",
        ("tokenization", "min_frequency", "max_vocab_size"),
        "data.tokenizer",
        lambda c: c.data.tokenizer is None,
        "data.tokenizer=null (a tokenizer of your own brings its vocabulary)",
    ),
    (
        "data",
        ("validation_seed",),
        "data.validation_size",
        lambda c: c.data.validation_size > 0,
        "data.validation_size > 0",
    ),
    (
        "data",
        ("validation_size", "validation_seed"),
        "data.labelled",
        lambda c: not c.data.has_labels,
        "unlabelled data (model selection on held-out sentences is not built for per-class evaluation)",
    ),
    (
        "data.oracle",
        tuple(f.name for f in dataclasses.fields(OracleConfig)),
        "data.source",
        lambda c: c.data.source == "oracle",
        "data.source=oracle",
    ),
    (
        "generator",
        ("mem_slots", "head_size"),
        "generator.architecture",
        lambda c: c.generator.architecture == "rmc",
        "generator.architecture=rmc",
    ),
    (
        "generator",
        ("num_heads",),
        "generator.architecture",
        lambda c: c.generator.architecture in ("rmc", "transformer"),
        "generator.architecture=rmc or transformer",
    ),
    (
        "generator",
        ("hidden_size",),
        "generator.architecture",
        lambda c: c.generator.architecture == "lstm",
        "generator.architecture=lstm",
    ),
    (
        "generator",
        ("num_layers", "context_length", "dropout", "pretrained"),
        "generator.architecture",
        lambda c: c.generator.architecture == "transformer",
        "generator.architecture=transformer",
    ),
    (
        "generator",
        ("embedding_dim", "num_heads", "num_layers", "context_length", "dropout"),
        "generator.pretrained",
        lambda c: c.generator.pretrained is None,
        "generator.pretrained=null (a pretrained model keeps its own sizes)",
    ),
    (
        "data",
        ("min_frequency", "max_vocab_size", "tokenizer"),
        "generator.pretrained",
        lambda c: c.generator.pretrained is None,
        "generator.pretrained=null (a pretrained model brings its tokenizer)",
    ),
    (
        "adversarial",
        ("gp_weight",),
        "adversarial.loss",
        lambda c: c.adversarial.loss == "wgan-gp",
        "adversarial.loss=wgan-gp",
    ),
    (
        "adversarial",
        ("rao_samples",),
        "adversarial.algorithm",
        lambda c: c.adversarial.algorithm == "gumbel-rao",
        "adversarial.algorithm=gumbel-rao",
    ),
    (
        "adversarial",
        ("rollouts", "baseline"),
        "adversarial.algorithm",
        lambda c: c.adversarial.algorithm == "seqgan",
        "adversarial.algorithm=seqgan",
    ),
    (
        "gumbel",
        ("beta_max", "schedule", "horizon"),
        "adversarial.algorithm",
        lambda c: c.adversarial.algorithm in RELAXED_ALGORITHMS,
        "a relaxed algorithm (relgan, straight-through, gumbel-rao); REINFORCE's discriminator sees hard tokens",
    ),
    (
        "discriminator",
        ("num_filters",),
        "discriminator.filter_counts",
        lambda c: c.discriminator.filter_counts is None,
        "discriminator.filter_counts=null",
    ),
    (
        "run",
        ("seed",),
        "run.seeds",
        lambda c: c.run.seeds is None,
        "run.seeds=null (with run.seeds every replica has its own seed)",
    ),
    ("run", ("replicas",), "run.seeds", lambda c: c.run.seeds is not None, "run.seeds=[s1, s2, ...]"),
    (
        "gumbel",
        ("horizon",),
        "gumbel.schedule",
        lambda c: c.gumbel.schedule not in ("no", "learned"),
        "a schedule that rises (lin, exp, log, sigmoid, quad, sqrt)",
    ),
)


def _check_effect(config: Config, overridden: Collection[str]) -> None:
    """A key set away from its default where it has no effect is an error, not silence. One exception: where
    the command line changes the setting (say generator.architecture) that makes a key of the config file
    ineffective, the key is reset to its default with a warning, so that any config can switch setting."""
    defaults = Config()
    for section, keys, setting, counts, remedy in CONDITIONAL_KEYS:
        if counts(config):
            continue
        current = _dotted(config, setting)
        for key in keys:
            name = f"{section}.{key}"
            value, default = _dotted(config, name), _dotted(defaults, name)
            if value == default:
                continue
            if setting in overridden and name not in overridden:
                logger.warning(
                    "%s = %r (config file) has no effect with %s = %r (command line) and is reset to its default",
                    name,
                    value,
                    setting,
                    current,
                )
                setattr(_dotted(config, section), key, default)
                continue
            raise ConfigError(
                f"{name} = {value!r} has no effect with {setting} = {current!r}; it counts with "
                f"{remedy}: set that, or remove the key"
            )


def _dotted(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _validate(config: Config, overridden: Collection[str] = frozenset()) -> None:
    """Checks that involve more than one key (``overridden``: the keys set on the command line)."""
    _read_straight_through(config)
    _check_effect(config, overridden)
    data = config.data
    if data.source == "files":
        for key in ("train_file", "test_file"):
            if getattr(data, key) is None:
                raise ConfigError(f"data.{key} is required when data.source is 'files'")
    if data.source == "hub" and data.dataset is None:
        raise ConfigError("data.dataset is required when data.source is 'hub' (or use data.source=files)")
    if data.oracle.start_token >= data.oracle.vocab_size:
        raise ConfigError(
            f"data.oracle.start_token = {data.oracle.start_token} must be < data.oracle.vocab_size "
            f"= {data.oracle.vocab_size}"
        )
    _validate_transformer(config)
    disc = config.discriminator
    if disc.embedding_dim % disc.num_representations:
        raise ConfigError(
            f"discriminator.embedding_dim = {disc.embedding_dim} must be a multiple of "
            f"discriminator.num_representations = {disc.num_representations}"
        )
    counts = disc.filter_counts
    if counts is not None and len(counts) != len(disc.filter_sizes):
        raise ConfigError(
            f"discriminator.filter_counts = {counts} must give one count per height of "
            f"discriminator.filter_sizes = {disc.filter_sizes}"
        )
    _validate_algorithm(config)
    horizon = config.gumbel.horizon
    if horizon is not None and horizon < config.adversarial.steps:
        raise ConfigError(
            f"gumbel.horizon = {horizon} is smaller than adversarial.steps = {config.adversarial.steps}; "
            "beta would overshoot beta_max (use null to follow adversarial.steps)"
        )
    seeds = config.run.seeds
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"run.seeds = {seeds!r} must list at least one seed, each once")
    if config.mle.epochs == 0 and config.adversarial.steps == 0:
        raise ConfigError("nothing to train: mle.epochs and adversarial.steps are both 0")


def _read_straight_through(config: Config) -> None:
    """gumbel.straight_through (configs saved before adversarial.algorithm) becomes that algorithm."""
    if not config.gumbel.straight_through:
        return
    if config.adversarial.algorithm not in ("relgan", "straight-through"):
        raise ConfigError(
            f"gumbel.straight_through = true contradicts adversarial.algorithm = "
            f"{config.adversarial.algorithm!r}; remove gumbel.straight_through"
        )
    logger.warning("gumbel.straight_through is deprecated; read as adversarial.algorithm=straight-through")
    config.adversarial.algorithm, config.gumbel.straight_through = "straight-through", False


def _validate_algorithm(config: Config) -> None:
    """Combinations an algorithm cannot train (its module says why)."""
    from relgan.algorithms import algorithm_class  # the algorithms import the models, which import this module

    problem = algorithm_class(config.adversarial.algorithm).obstacle(config)
    if problem is not None:
        raise ConfigError(f"adversarial.algorithm={config.adversarial.algorithm}: {problem}")


def _validate_transformer(config: Config) -> None:
    """What a transformer needs of the config alone (its context against the sentence length T is checked by
    relgan.models.build_generator, once T is known)."""
    gen = config.generator
    if gen.architecture != "transformer":
        return
    if gen.pretrained is not None:
        if config.data.source == "oracle":
            raise ConfigError(
                "generator.pretrained needs text data (data.source=files or hub); the synthetic "
                "oracle has its own vocabulary"
            )
        return
    if gen.embedding_dim % gen.num_heads:
        raise ConfigError(
            f"generator.num_heads = {gen.num_heads} must divide generator.embedding_dim = "
            f"{gen.embedding_dim} (the transformer's width)"
        )


def schedule_horizon(config: Config) -> int:
    """N of the beta schedule: explicit, or the number of adversarial steps (at least 2)."""
    return config.gumbel.horizon if config.gumbel.horizon is not None else max(config.adversarial.steps, 2)


def describe_keys() -> str:
    """One line per config key with its type, allowed values, default and help (for ``--help``)."""
    lines: list[str] = []

    def walk(cls: type, prefix: str, instance: Any) -> None:
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            kind = hints[spec.name]
            value = getattr(instance, spec.name)
            if isinstance(kind, type) and dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{spec.name}.", value)
                continue
            allowed = spec.metadata.get("choices") or _choices(spec.metadata.get("item_choices", ()))
            detail = "|".join(allowed) if allowed else _describe(kind)
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"  {prefix}{spec.name} ({detail}; default {shown}): {spec.metadata['help']}")

    walk(Config, "", Config())
    return "\n".join(lines)
