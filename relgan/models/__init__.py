"""The reference networks in plain PyTorch: the generators (relational memory or LSTM core; a GPT-2
transformer built with ``transformers``) and the multi-representation discriminator. Nothing here depends on
the fast backends (``relgan.fast``)."""

from __future__ import annotations

from typing import Any

from relgan.config import GeneratorConfig
from relgan.errors import ConfigError
from relgan.models.discriminator import Discriminator
from relgan.models.generator import Generator, SequenceGenerator
from relgan.models.transformer import TransformerGenerator

__all__ = [
    "Discriminator",
    "Generator",
    "SequenceGenerator",
    "TransformerGenerator",
    "build_generator",
    "count_parameters",
    "generator_class",
]


def generator_class(config: GeneratorConfig) -> type[SequenceGenerator]:
    """The class of ``generator.architecture`` (its capabilities are class attributes)."""
    return TransformerGenerator if config.architecture == "transformer" else Generator


def build_generator(
    config: GeneratorConfig,
    vocab_size: int,
    seq_len: int,
    start_id: int,
    transformer: dict[str, Any] | None = None,
    num_classes: int = 0,
) -> SequenceGenerator:
    """The generator of ``config.architecture`` (conditioned on ``num_classes`` classes when > 0). A transformer
    is randomly initialised from the config keys, loaded from ``config.pretrained``, or built with the GPT-2
    config ``transformer`` (a saved run's)."""
    if generator_class(config) is Generator:
        return Generator(config, vocab_size, seq_len, start_id, num_classes)
    from transformers import GPT2Config, GPT2LMHeadModel

    from relgan.pretrained import load_pretrained_model

    if transformer is not None:
        model = GPT2LMHeadModel(GPT2Config.from_dict(transformer))
    elif config.pretrained is not None:
        model = load_pretrained_model(config.pretrained)
    else:
        model = None
    generator = TransformerGenerator(config, vocab_size, seq_len, start_id, model, num_classes)
    positions, outputs = generator.model.config.n_positions, generator.model.config.vocab_size
    key = "generator.pretrained" if config.pretrained is not None else "generator.context_length"
    if positions < seq_len:
        raise ConfigError(
            f"{key}: the transformer has {positions} positions, fewer than the sentence length "
            f"T = {seq_len}; raise the context or shorten the sentences (data.seq_len)"
        )
    if outputs != vocab_size:
        raise ConfigError(f"{key}: the transformer predicts {outputs} tokens but the tokenizer has {vocab_size}")
    return generator


def count_parameters(module) -> int:
    """Number of trainable scalars (a tied weight counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
