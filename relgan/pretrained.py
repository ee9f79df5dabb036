"""Models and tokenizers saved in a local directory (``save_pretrained``): a GPT-2 for ``generator.pretrained``
and any causal LM as a judge (``relgan evaluate --judge-lm``). Nothing is ever downloaded: a missing directory
or file is a one-line error."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from relgan.errors import ConfigError

if TYPE_CHECKING:  # the model classes import transformers' modelling code (seconds): only where a model is loaded
    from transformers import GPT2LMHeadModel, PreTrainedModel

KEY = "generator.pretrained"


def _model_directory(directory: str, key: str) -> tuple[Path, str]:
    """``directory`` as a path and its model type, if it holds a saved transformers model's config."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"{key}: no such directory: {path} (save a model there with save_pretrained)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{key}: {path} holds no config.json; it is not a saved transformers model")
    try:
        return path, AutoConfig.from_pretrained(path, local_files_only=True).model_type
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: {path}/config.json is unreadable ({str(exc).splitlines()[0]})") from None


def _gpt2_directory(directory: str) -> Path:
    """``directory`` as a path, if it holds a saved GPT-2 model's config."""
    path, model_type = _model_directory(directory, KEY)
    if model_type != "gpt2":
        raise ConfigError(
            f"{KEY}: {path} holds a {model_type!r} model; the transformer generator is GPT-2 (model_type 'gpt2')"
        )
    return path


@contextmanager
def _quiet_transformers():
    """transformers reports every tied or unused weight at warning level."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_pretrained_model(directory: str) -> GPT2LMHeadModel:
    """The GPT-2 language model saved in ``directory``."""
    from transformers import GPT2LMHeadModel

    path = _gpt2_directory(directory)
    try:
        with _quiet_transformers():
            return GPT2LMHeadModel.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ConfigError(f"{KEY}: cannot load the weights in {path} ({str(exc).splitlines()[0]})") from None


def load_causal_lm(directory: str, key: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, model in eval mode) of any causal language model saved in ``directory``; ``key`` names the
    setting in errors."""
    from transformers import AutoModelForCausalLM

    path, model_type = _model_directory(directory, key)
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{key}: cannot load a causal language model ({model_type}) from {path} ({str(exc).splitlines()[0]})"
        ) from None
    return _tokenizer_with_eos(path, key), model.eval()


def load_pretrained_tokenizer(directory: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the model in ``directory``; it must define an end-of-sentence token."""
    path = _gpt2_directory(directory)
    tokenizer = _tokenizer_with_eos(path, KEY)
    logging.getLogger("relgan").info(
        "tokenizer: %s from %s (%d tokens)", type(tokenizer).__name__, path, len(tokenizer)
    )
    return tokenizer


def load_text_tokenizer(directory: str) -> PreTrainedTokenizerBase:
    """``data.tokenizer``: any Hugging Face tokenizer saved in ``directory`` (save_pretrained); it must define an
    end-of-sentence token, which ends and pads the sentences."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"data.tokenizer: no such directory: {path} (save a tokenizer there with save_pretrained)")
    return _tokenizer_with_eos(path, "data.tokenizer")


def _tokenizer_with_eos(path: Path, key: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved in ``path``; it must define an end-of-sentence token."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{key}: {path} holds no usable tokenizer ({str(exc).splitlines()[0]}); save one "
            "beside the model with tokenizer.save_pretrained"
        ) from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"{key}: the tokenizer in {path} has no eos_token; the end of a sentence needs one")
    return tokenizer
