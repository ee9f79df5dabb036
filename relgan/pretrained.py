"""A GPT-2 model and its tokenizer saved in a local directory (``save_pretrained``), for
``generator.pretrained``. Nothing is ever downloaded: a missing directory or file is a one-line error."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, GPT2LMHeadModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from relgan.errors import ConfigError

KEY = "generator.pretrained"


def _gpt2_directory(directory: str) -> Path:
    """``directory`` as a path, if it holds a saved GPT-2 model's config."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"{KEY}: no such directory: {path} (save a model there with save_pretrained)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{KEY}: {path} holds no config.json; it is not a saved transformers model")
    try:
        model_type = AutoConfig.from_pretrained(path, local_files_only=True).model_type
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{KEY}: {path}/config.json is unreadable ({str(exc).splitlines()[0]})") from None
    if model_type != "gpt2":
        raise ConfigError(f"{KEY}: {path} holds a {model_type!r} model; the transformer generator is GPT-2 "
                          "(model_type 'gpt2')")
    return path


def load_pretrained_model(directory: str) -> GPT2LMHeadModel:
    """The GPT-2 language model saved in ``directory``."""
    path = _gpt2_directory(directory)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers reports every tied or unused weight at warning level
    try:
        return GPT2LMHeadModel.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ConfigError(f"{KEY}: cannot load the weights in {path} ({str(exc).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def load_pretrained_tokenizer(directory: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the model in ``directory``; it must define an end-of-sentence token."""
    path = _gpt2_directory(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{KEY}: {path} holds no usable tokenizer ({str(exc).splitlines()[0]}); save one "
                          "beside the model with tokenizer.save_pretrained") from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"{KEY}: the tokenizer in {path} has no eos_token; the end of a sentence needs one")
    logging.getLogger("relgan").info("tokenizer: %s from %s (%d tokens)", type(tokenizer).__name__, path,
                                     len(tokenizer))
    return tokenizer
