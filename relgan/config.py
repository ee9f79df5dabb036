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
TOKENIZATIONS = ("nltk", "whitespace", "char", "bpe")
# choices that the plug-ins declare (relgan/plugins.py gathers them into a Catalogue)
ALGORITHM_NAMES = "algorithms"
METRIC_NAMES = "metrics"


def setting(default: Any, help: str, **constraints: Any) -> Any:
    """A config field with help text and constraints (choices, min, gt, lt, max, item_choices): the fields of the
    sections below and of every plug-in's options."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **constraints})
    return field(default=default, metadata={"help": help, **constraints})


def _section(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


@dataclass
class OracleConfig:
    vocab_size: int = setting(5000, "vocabulary size of the synthetic oracle LSTM", min=2)
    seq_len: int = setting(20, "length of every oracle sequence (the paper uses 20 and 40)", min=2)
    embedding_dim: int = setting(32, "oracle embedding width", min=1)
    hidden_size: int = setting(32, "oracle LSTM hidden size", min=1)
    num_train: int = setting(10000, "number of oracle training sequences", min=1)
    num_test: int = setting(10000, "number of held-out oracle sequences", min=1)
    seed: int = setting(1234, "seed of the oracle's N(0,1) weights and of its samples", min=0)
    start_token: int = setting(0, "token id fed to the oracle and the generator at the first step", min=0)
    params: str | None = setting(
        None,
        "a folder of SeqGAN's fixed oracle weights (data/seqgan_oracle/prepare.py) instead of N(0, 1) ones; the "
        "sizes must be SeqGAN's",
    )


# SeqGAN's oracle (data.oracle.params): the sizes its weights fix
SEQGAN_ORACLE_SIZES = {"vocab_size": 5000, "seq_len": 20, "embedding_dim": 32, "hidden_size": 32, "start_token": 0}


@dataclass
class DataConfig:
    source: str = setting("oracle", "where the corpus comes from", choices=("oracle", "files", "hub"))
    train_file: str | None = setting(None, "training text, one sentence per line (source=files)")
    test_file: str | None = setting(None, "test text, one sentence per line (source=files)")
    dataset: str | None = setting(None, "Hugging Face dataset name (source=hub)")
    dataset_config: str | None = setting(None, "Hugging Face dataset configuration name (source=hub)")
    text_column: str = setting("text", "column holding the sentences (source=hub)")
    label_column: str | None = setting(
        None, "column holding each sentence's class; set = a class-conditional run (source=hub)"
    )
    labelled: bool = setting(False, "each line is `label<TAB>sentence`; true = a class-conditional run (source=files)")
    condition_on_labels: bool = setting(
        True,
        "with labelled data: class-conditional models; false = unconditional "
        "models, evaluated per class all the same (the baseline of class_accuracy)",
    )
    train_split: str = setting("train", "training split name (source=hub)")
    test_split: str = setting("test", "test split name (source=hub)")
    tokenization: str = setting(
        "nltk",
        "nltk = lower-case + NLTKWordTokenizer (RelGAN); whitespace = split on spaces; char = characters (a space "
        "between words is a token too); bpe = subwords trained on the training split (any language)",
        choices=TOKENIZATIONS,
    )
    tokenizer: str | None = setting(
        None, "a local directory holding a Hugging Face tokenizer (save_pretrained) to use instead of building one"
    )
    min_frequency: int = setting(1, "tokens seen fewer times in training become <unk> (bpe: merges as rare)", min=1)
    max_vocab_size: int | None = setting(
        None, "keep only the most frequent tokens (specials excluded); bpe: the vocabulary size, null = 8000", min=1
    )
    seq_len: int | None = setting(None, "sentence length T; null = longest training sentence", min=1)
    validation_size: int = setting(
        0,
        "training sentences held out for model selection (never trained on): each evaluation also scores an "
        "independent sample set against them (val/ keys); 0 = none",
        min=0,
    )
    validation_seed: int = setting(0, "which training sentences are held out (data.validation_size)", min=0)
    oracle: OracleConfig = _section(OracleConfig, "synthetic oracle benchmark (source=oracle)")

    @property
    def has_labels(self) -> bool:
        """Whether the sentences carry class labels (and the models condition on them)."""
        return (self.source == "files" and self.labelled) or (self.source == "hub" and self.label_column is not None)


@dataclass
class GeneratorConfig:
    architecture: str = setting("rmc", "relational memory core, LSTM or GPT-2 transformer", choices=ARCHITECTURES)
    embedding_dim: int = setting(32, "token embedding width (transformer: the model width)", min=1)
    mem_slots: int = setting(1, "relational memory slots (rmc)", min=1)
    num_heads: int = setting(2, "attention heads (rmc, transformer)", min=1)
    head_size: int = setting(256, "width of each head; memory width = num_heads * head_size (rmc)", min=1)
    hidden_size: int = setting(32, "LSTM hidden size (lstm)", min=1)
    num_layers: int = setting(2, "transformer blocks (transformer)", min=1)
    context_length: int | None = setting(
        None, "positions the transformer can attend over; null = the sentence length T (transformer)", min=1
    )
    dropout: float = setting(0.1, "dropout of embeddings, attention and residuals (transformer)", min=0.0, lt=1.0)
    pretrained: str | None = setting(
        None, "local directory of a saved GPT-2 model and its tokenizer to start from (transformer; never downloaded)"
    )


@dataclass
class DiscriminatorConfig:
    embedding_dim: int = setting(64, "total embedding width, split into num_representations", min=1)
    num_representations: int = setting(64, "S: embedded representations sharing the CNN", min=1)
    filter_sizes: list[int] = setting([2, 3, 4, 5], "convolution heights over time", min=1)
    num_filters: int = setting(300, "filters per height", min=1)
    filter_counts: list[int] | None = setting(
        None,
        "filters of each height, one per filter_sizes entry (SeqGAN's "
        "100, 200, ..., 160); null = num_filters of every height",
        min=1,
    )
    dropout: float = setting(
        0.25, "dropout before the output layers (always on, as in the official code)", min=0.0, lt=1.0
    )
    hidden_size: int = setting(100, "width of the layer before the logit", min=1)


@dataclass
class GumbelConfig:
    beta_max: float = setting(100.0, "largest inverse temperature beta (paper: 100 or 1000)", min=1.0)
    schedule: str = setting("exp", "how beta rises from 1 to beta_max", choices=SCHEDULES)
    horizon: int | None = setting(
        None, "N in the schedule formulas; null = adversarial.steps (paper), 5000 = official code", min=2
    )


@dataclass
class MLEConfig:
    epochs: int = setting(150, "MLE pretraining epochs", min=0)
    batch_size: int = setting(64, "sentences per batch and process", min=1)
    lr: float = setting(1e-2, "Adam learning rate", gt=0.0)
    grad_clip: float = setting(5.0, "global gradient-norm clip", gt=0.0)
    shuffle: bool = setting(False, "shuffle batches each epoch (official: sequential)")
    eval_every: int = setting(10, "evaluate every k epochs (and at the end of MLE)", min=1)
    checkpoint_every: int = setting(10, "checkpoint every k epochs (and at the end of MLE)", min=1)
    patience: int = setting(
        0,
        "stop after this many evaluations in a row without a lower validation NLL (val/nll_test), then go back to the "
        "best evaluation's weights; mle.epochs is then the most; 0 = train all mle.epochs",
        min=0,
    )


@dataclass
class AdversarialConfig:
    algorithm: str = setting(
        "relgan",
        "how the generator gets its gradient (the algorithms and their own keys are listed below; docs/algorithms.md)",
        choices=ALGORITHM_NAMES,
    )
    steps: int = setting(2000, "adversarial iterations; 0 = MLE baseline", min=0)
    batch_size: int = setting(64, "sentences per batch and process", min=1)
    g_steps: int = setting(1, "generator updates per iteration", min=1)
    d_steps: int = setting(5, "discriminator updates per iteration", min=1)
    g_lr: float = setting(1e-4, "generator Adam learning rate", gt=0.0)
    d_lr: float = setting(1e-4, "discriminator Adam learning rate", gt=0.0)
    grad_clip: float = setting(5.0, "global gradient-norm clip", gt=0.0)
    loss: str = setting("rsgan", "GAN loss", choices=GAN_LOSSES)
    gp_weight: float = setting(10.0, "gradient-penalty weight (wgan-gp)", min=0.0)
    control: str = setting(
        "none",
        "removed: a control run for the verdict, the discriminator's signal removed (it is never trained; the "
        "REINFORCE family's rewards are all P(real) = 1/2); none: train as the algorithm does",
        choices=("none", "removed"),
    )
    eval_every: int = setting(20, "evaluate every k iterations (and at the end)", min=1)
    checkpoint_every: int = setting(100, "checkpoint every k iterations (and at the end)", min=1)
    patience: int = setting(
        0,
        "stop after this many evaluations in a row without a better model-selection value (relgan/selection.py: "
        "val/nll_oracle on the synthetic benchmark, val/bleu-4 - val/self-bleu-4 on text); adversarial.steps is then "
        "the most; 0 = run all adversarial.steps",
        min=0,
    )
    # the chosen algorithm's own keys (its Options dataclass), written flat in this section
    options: Any = field(default_factory=lambda: NoOptions(), metadata={"options_of": "algorithm"})


@dataclass
class NoOptions:
    """The options of an algorithm that has none of its own."""


@dataclass
class EvalConfig:
    protocol: str = setting("relgan", "which samples and references BLEU uses", choices=PROTOCOLS)
    metrics: list[str] | None = setting(
        None,
        "metrics computed during training (listed below; lm: the LM judges, which train two small LSTMs per "
        "evaluation; fed: FED and MAUVE, with the 'fed' extra); null = the metrics marked default that apply to "
        "the data source (the list is resolved when the config is loaded). A metric listed must apply",
        item_choices=METRIC_NAMES,
    )
    num_samples: int = setting(10000, "sentences sampled at each evaluation", min=1)
    bleu_orders: list[int] = setting([2, 3, 4, 5], "BLEU / Self-BLEU orders", min=1, max=9)
    batch_size: int = setting(1000, "sampling batch size (samples depend on it for a given seed)", min=1)
    print_samples: int = setting(3, "samples printed with each evaluation summary", min=0)

    def chosen_metrics(self) -> list[str]:
        """eval.metrics as loaded (null is resolved to the default metrics that apply)."""
        if self.metrics is None:
            raise ValueError("eval.metrics = null is resolved when a config is loaded (relgan.plugins.load_config)")
        return self.metrics


@dataclass
class RunConfig:
    name: str | None = setting(None, "run name; null = the config file's name")
    output_dir: str = setting("runs", "parent folder of run directories")
    seed: int = setting(42, "seed of initialisation, data order and noise", min=0)
    seeds: list[int] | None = setting(
        None,
        "one replica per seed, trained in this process, each in "
        "<run dir>/seed-<s>/ and equal to a run with run.seed = s; null = one run "
        "with run.seed",
        min=0,
    )
    replicas: str = setting(
        "auto",
        "how the replicas of run.seeds train: sequential = one after another; batched = "
        "in lockstep, each step one vmapped pass of the reference models (one process); auto = "
        "sequential, until batched replicas are measured faster somewhere",
        choices=REPLICA_MODES,
    )
    mixed_precision: str = setting("no", "autocast precision", choices=("no", "bf16", "fp16"))
    cpu: bool = setting(False, "force the CPU even when a GPU is present")
    tracker: str = setting(
        "auto",
        "experiment tracker; auto = tensorboard when installed",
        choices=("auto", "none", "tensorboard", "wandb", "mlflow"),
    )
    log_every: int = setting(10, "steps between loss logs and NaN checks", min=1)
    keep_checkpoints: int = setting(3, "complete checkpoints kept on disk", min=1)
    backend: str = setting(
        "auto",
        "reference = relgan/models as written; auto = verified fast paths where they "
        "apply (C++ kernels on CPU), else the reference; fast = auto, but missing kernels are "
        "an error",
        choices=BACKENDS,
    )
    cuda_graphs: bool = setting(True, "replay whole training steps as CUDA graphs (one GPU only; no effect on CPU)")
    num_threads: int | None = setting(None, "torch CPU threads; null = torch's default", min=1)


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
        """The config as nested mappings, the algorithm's options written flat in ``adversarial`` (as YAML has
        them)."""
        raw = dataclasses.asdict(self)
        raw["adversarial"].update(raw["adversarial"].pop("options"))
        return raw


# --------------------------------------------------------------------------------------------------
# what the plug-ins declare (each in its own module; relgan/plugins.py gathers them)


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the config knows of an algorithm of relgan/algorithms (``adversarial.algorithm``)."""

    name: str
    summary: str  # one line for --help
    options: type  # a dataclass of setting()s: its own keys, written in the adversarial section
    shared_keys: tuple[str, ...]  # keys of other sections (gumbel.beta_max) that count only for the algorithms
    # that list them
    requires: typing.Mapping[str, tuple[Any, str]]  # dotted key -> (the value it needs, why)
    obstacle: Callable[[Config], str | None]  # why it cannot train a config (None: it can)
    legacy_switch: str | None = None  # a boolean key of old configs that meant this algorithm


@dataclass(frozen=True)
class MetricSpec:
    """What the config knows of a metric of relgan/metrics/registry.py (``eval.metrics``)."""

    name: str
    help: str
    default: bool  # part of the default eval.metrics (where it applies)
    obstacle: Callable[[Config], str | None]  # why a run of this config cannot compute it (None: it can)


@dataclass(frozen=True)
class Catalogue:
    """Every plug-in the config is checked against."""

    algorithms: typing.Mapping[str, AlgorithmSpec]
    metrics: typing.Mapping[str, MetricSpec]

    def choices(self, table: str) -> tuple[str, ...]:
        """The names of one table (``ALGORITHM_NAMES`` or ``METRIC_NAMES``)."""
        return tuple(self.algorithms if table == ALGORITHM_NAMES else self.metrics)

    def option_owners(self) -> dict[str, list[AlgorithmSpec]]:
        """Every algorithm option's key, with the algorithms that declare it."""
        owners: dict[str, list[AlgorithmSpec]] = {}
        for spec in self.algorithms.values():
            for option in dataclasses.fields(spec.options):
                owners.setdefault(option.name, []).append(spec)
        return owners


# --------------------------------------------------------------------------------------------------
# loading and validation (relgan.plugins.load_config calls these with every plug-in)


def read_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), *, catalogue: Catalogue
) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply ``key=value`` overrides, validate."""
    where = str(path) if path is not None else "defaults"
    raw = _read_yaml(Path(path)) if path is not None else {}
    overridden = set()
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value, where="command line")
        overridden.add(key)
    config = _assemble(raw, where, catalogue, overridden)
    if config.run.name is None and path is not None:
        config.run.name = Path(path).stem
    _check_run_name(config.run.name)
    return config


def build_config(raw: dict[str, Any], where: str, *, catalogue: Catalogue) -> Config:
    """Build and validate a config from an already-parsed mapping (e.g. a run's saved config)."""
    return _assemble(raw, where, catalogue, frozenset())


def _assemble(raw: dict[str, Any], where: str, catalogue: Catalogue, overridden: Collection[str]) -> Config:
    _read_legacy_switches(raw, where, catalogue)
    config = _build(Config, raw, "", where, _Context(catalogue, overridden))
    _check_run_name(config.run.name)
    _validate(config, catalogue, overridden)
    return config


@dataclass(frozen=True)
class _Context:
    catalogue: Catalogue
    overridden: Collection[str]


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


def _build(cls: type, raw: Any, prefix: str, where: str, context: _Context) -> Any:
    section = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{section}' must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if "options_of" not in f.metadata}
    plugged = [f for f in dataclasses.fields(cls) if "options_of" in f.metadata]
    owners = context.catalogue.option_owners() if plugged else {}
    for key in raw:
        if key not in known and key not in owners:
            names = [*known, *owners]
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{hint}; keys in {section}: {', '.join(names)}")
    values = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        key = prefix + name
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw[name], prefix=key + ".", where=where, context=context)
        else:
            value = _coerce(raw[name], kind, key, where)
            _check_constraints(value, spec.metadata, key, where, context.catalogue)
            values[name] = value
    for spec in plugged:
        chooser = spec.metadata["options_of"]
        chosen = values.get(chooser, known[chooser].default)
        values[spec.name] = _build_options(raw, prefix, where, context, owners, chooser, chosen)
    return cls(**values)


def _build_options(
    raw: dict[str, Any],
    prefix: str,
    where: str,
    context: _Context,
    owners: dict[str, list[AlgorithmSpec]],
    chooser: str,
    chosen: str,
) -> Any:
    """The chosen algorithm's options from the keys of its section. Another algorithm's key that is set away
    from its default has no effect: an error, or (where the command line chose the algorithm and the key came
    from the config file) reset with a warning, as _check_effect does for other keys."""
    spec = context.catalogue.algorithms[chosen]
    own = {f.name for f in dataclasses.fields(spec.options)}
    mine = {}
    for key, value in raw.items():
        if key not in owners:
            continue
        if key in own:
            mine[key] = value
            continue
        other = owners[key][0]
        option = next(f for f in dataclasses.fields(other.options) if f.name == key)
        coerced = _coerce(value, typing.get_type_hints(other.options)[key], prefix + key, where)
        if coerced == option.default:
            continue
        setting_key, name = prefix + chooser, prefix + key
        if setting_key in context.overridden and name not in context.overridden:
            logger.warning(
                "%s = %r (config file) has no effect with %s = %r (command line) and is reset to its default",
                name,
                coerced,
                setting_key,
                chosen,
            )
            continue
        counts = " or ".join(f"{setting_key}={o.name}" for o in owners[key])
        raise ConfigError(
            f"{name} = {coerced!r} has no effect with {setting_key} = {chosen!r}; it counts with {counts}: set "
            "that, or remove the key"
        )
    return _build(spec.options, mine, prefix, where, context)


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
            if "\0" in value:  # no file name, no choice holds one; os calls would raise on it
                raise ConfigError(f"{where}: {key} contains a NUL character; remove it")
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


def _choices(choices: Sequence[str] | str, catalogue: Catalogue) -> Sequence[str]:
    """Allowed values: a tuple, or the name of a table of plug-ins."""
    return catalogue.choices(choices) if isinstance(choices, str) else choices


def _check_constraints(value: Any, meta: typing.Mapping[str, Any], key: str, where: str, catalogue: Catalogue) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    if "item_choices" in meta:
        allowed = _choices(meta["item_choices"], catalogue)
        for item in items:
            if item not in allowed:
                raise ConfigError(f"{where}: {key} contains {item!r}; allowed values: {', '.join(allowed)}")
    if "choices" in meta:
        allowed = _choices(meta["choices"], catalogue)
        if value not in allowed:
            raise ConfigError(f"{where}: {key} = {value!r} is not allowed; choose one of: {', '.join(allowed)}")
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
        "mle",
        ("patience",),
        "data.validation_size",
        lambda c: c.data.validation_size > 0,
        "data.validation_size > 0 (patience reads the held-out sentences' values)",
    ),
    (
        "adversarial",
        ("patience",),
        "data.validation_size",
        lambda c: c.data.validation_size > 0,
        "data.validation_size > 0 (patience reads the held-out sentences' values)",
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


def _algorithm_keys(catalogue: Catalogue) -> tuple[tuple[str, tuple[str, ...], str, Any, str], ...]:
    """Rules like CONDITIONAL_KEYS for the keys of other sections that count only for the algorithms that
    declare them (AlgorithmSpec.shared_keys)."""
    owners: dict[str, list[str]] = {}
    for spec in catalogue.algorithms.values():
        for key in spec.shared_keys:
            owners.setdefault(key, []).append(spec.name)
    rules = []
    for key, names in owners.items():
        section, name = key.rsplit(".", 1)
        remedy = " or ".join(f"adversarial.algorithm={n}" for n in names)
        rules.append((section, (name,), "adversarial.algorithm", _algorithm_in(frozenset(names)), remedy))
    return tuple(rules)


def _algorithm_in(names: frozenset[str]) -> Callable[[Config], bool]:
    return lambda config: config.adversarial.algorithm in names


def _check_effect(config: Config, overridden: Collection[str], catalogue: Catalogue) -> None:
    """A key set away from its default where it has no effect is an error, not silence. One exception: where
    the command line changes the setting (say generator.architecture) that makes a key of the config file
    ineffective, the key is reset to its default with a warning, so that any config can switch setting."""
    defaults = Config()
    for section, keys, setting_key, counts, remedy in (*CONDITIONAL_KEYS, *_algorithm_keys(catalogue)):
        if counts(config):
            continue
        current = _dotted(config, setting_key)
        for key in keys:
            name = f"{section}.{key}"
            value, default = _dotted(config, name), _dotted(defaults, name)
            if value == default:
                continue
            if setting_key in overridden and name not in overridden:
                logger.warning(
                    "%s = %r (config file) has no effect with %s = %r (command line) and is reset to its default",
                    name,
                    value,
                    setting_key,
                    current,
                )
                setattr(_dotted(config, section), key, default)
                continue
            raise ConfigError(
                f"{name} = {value!r} has no effect with {setting_key} = {current!r}; it counts with "
                f"{remedy}: set that, or remove the key"
            )


def _dotted(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _validate(config: Config, catalogue: Catalogue, overridden: Collection[str]) -> None:
    """Checks that involve more than one key (``overridden``: the keys set on the command line)."""
    _check_effect(config, overridden, catalogue)
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
    if data.oracle.params is not None:
        for key, size in SEQGAN_ORACLE_SIZES.items():
            if getattr(data.oracle, key) != size:
                raise ConfigError(
                    f"data.oracle.{key} = {getattr(data.oracle, key)}, but SeqGAN's oracle (data.oracle.params) "
                    f"has {size}: set data.oracle.{key}={size}"
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
    _validate_algorithm(config, catalogue.algorithms[config.adversarial.algorithm])
    _resolve_metrics(config, catalogue)
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


def _read_legacy_switches(raw: dict[str, Any], where: str, catalogue: Catalogue) -> None:
    """A boolean key of old configs that chose an algorithm (gumbel.straight_through) becomes that algorithm."""
    for spec in catalogue.algorithms.values():
        if spec.legacy_switch is None:
            continue
        section, key = spec.legacy_switch.rsplit(".", 1)
        values = raw.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        if not _coerce(values.pop(key), bool, spec.legacy_switch, where):
            continue
        adversarial = raw.setdefault("adversarial", {})
        if not isinstance(adversarial, dict):
            return  # not a section: building the config says so in one line
        chosen = adversarial.get("algorithm", AdversarialConfig.algorithm)
        if chosen not in (AdversarialConfig.algorithm, spec.name):
            raise ConfigError(
                f"{spec.legacy_switch} = true contradicts adversarial.algorithm = {chosen!r}; remove "
                f"{spec.legacy_switch}"
            )
        logger.warning("%s is deprecated; read as adversarial.algorithm=%s", spec.legacy_switch, spec.name)
        adversarial["algorithm"] = spec.name


def _validate_algorithm(config: Config, spec: AlgorithmSpec) -> None:
    """Combinations an algorithm cannot train (its module says why)."""
    for key, (needed, why) in spec.requires.items():
        value = _dotted(config, key)
        if value != needed:
            raise ConfigError(f"adversarial.algorithm={spec.name} needs {key}={needed}, not {value}: {why}")
    problem = spec.obstacle(config)
    if problem is not None:
        raise ConfigError(f"adversarial.algorithm={spec.name}: {problem}")


def _resolve_metrics(config: Config, catalogue: Catalogue) -> None:
    """eval.metrics: null becomes the default metrics that apply here; a metric listed must apply. (A list of
    exactly the default metrics, as configs before null was the default saved it, still means the default.)"""
    listed = config.eval.metrics
    defaults = [spec.name for spec in catalogue.metrics.values() if spec.default]
    if listed is None or sorted(listed) == sorted(defaults):
        config.eval.metrics = [name for name in defaults if catalogue.metrics[name].obstacle(config) is None]
        return
    for name in listed:
        problem = catalogue.metrics[name].obstacle(config)
        if problem is not None:
            raise ConfigError(f"eval.metrics: {name} cannot be computed here: {problem}; remove it from the list")


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


def dotted(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping (``Config.to_dict()``) as one level of dotted keys: ``{"run.seed": 42, ...}``."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def schedule_horizon(config: Config) -> int:
    """N of the beta schedule: explicit, or the number of adversarial steps (at least 2)."""
    return config.gumbel.horizon if config.gumbel.horizon is not None else max(config.adversarial.steps, 2)


def describe_keys(catalogue: Catalogue) -> str:
    """One line per config key with its type, allowed values, default and help, then each algorithm with its own
    keys and each metric with what it needs (for ``--help``)."""
    lines: list[str] = []

    def walk(cls: type, prefix: str, instance: Any) -> None:
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            if "options_of" in spec.metadata:
                continue
            kind = hints[spec.name]
            value = getattr(instance, spec.name)
            if isinstance(kind, type) and dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{spec.name}.", value)
                continue
            allowed = _choices(spec.metadata.get("choices") or spec.metadata.get("item_choices", ()), catalogue)
            detail = "|".join(allowed) if allowed else _describe(kind)
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"  {prefix}{spec.name} ({detail}; default {shown}): {spec.metadata['help']}")

    walk(Config, "", Config())
    lines.append("adversarial.algorithm (each with its own keys, written in the adversarial section):")
    for algorithm in catalogue.algorithms.values():
        lines.append(f"  {algorithm.name}: {algorithm.summary}")
        walk(algorithm.options, "    adversarial.", algorithm.options())
        needs = [f"{key}={value}" for key, (value, _) in algorithm.requires.items()]
        counted = list(algorithm.shared_keys)
        if algorithm.legacy_switch is not None:
            counted.append(f"{algorithm.legacy_switch} (deprecated: true = this algorithm)")
        if needs:
            lines.append(f"    needs {', '.join(needs)}")
        if counted:
            lines.append(f"    reads {', '.join(counted)}")
    lines.append("eval.metrics:")
    for metric in catalogue.metrics.values():
        lines.append(f"  {metric.name}{' (default)' if metric.default else ''}: {metric.help}")
    return "\n".join(lines)
