"""A GPT-2 generator (``transformers``) in RelGAN's game: the same interface as the RMC and LSTM generators.

Teacher forcing is the model's own forward on [start, x_0 .. x_{T-2}]; sampling decodes one token at a time
through the key/value cache, so in the G step gradients reach every weight through the cached keys and
values of earlier positions as well as through the current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from transformers import GPT2Config

from relgan.config import GeneratorConfig
from relgan.models.generator import SequenceGenerator

if TYPE_CHECKING:  # transformers' modelling code takes seconds to import: only a run with a transformer pays it
    from transformers import GPT2LMHeadModel


def gpt2_config(config: GeneratorConfig, vocab_size: int, seq_len: int, start_id: int) -> GPT2Config:
    """The GPT-2 architecture of the config keys (width = embedding_dim; context null = seq_len)."""
    dropout = config.dropout
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.context_length or seq_len,
        n_embd=config.embedding_dim,
        n_layer=config.num_layers,
        n_head=config.num_heads,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=start_id,
        eos_token_id=None,
        pad_token_id=None,
    )


class TransformerGenerator(SequenceGenerator):
    """A causal transformer LM (``GPT2LMHeadModel``, randomly initialised or ``model`` as given) as generator.

    The decoding state is the model's key/value cache (None before the first step). ``model`` must have
    ``vocab_size`` output tokens and at least ``seq_len`` positions (:func:`relgan.models.build_generator`
    checks both). Its steps run eagerly (capturing transformers' attention code is not verified) and one run at
    a time (transformers' modules are not built for vmap).
    """

    cuda_graphs = False
    batched = False

    @classmethod
    def floats_per_token(cls, config: GeneratorConfig, vocab_size: int) -> int:
        return 3 * vocab_size + 16 * config.num_layers * config.embedding_dim

    def __init__(
        self,
        config: GeneratorConfig,
        vocab_size: int,
        seq_len: int,
        start_id: int,
        model: GPT2LMHeadModel | None = None,
        num_classes: int = 0,
    ) -> None:
        from transformers import GPT2LMHeadModel

        super().__init__(config, vocab_size, seq_len, start_id, num_classes)
        self.model = model if model is not None else GPT2LMHeadModel(gpt2_config(config, vocab_size, seq_len, start_id))
        if num_classes:
            width = self.model.config.n_embd
            self.class_embedding = nn.Parameter(
                torch.empty(num_classes, width).normal_(0, self.model.config.initializer_range)
            )  # GPT-2's own embedding initialisation

    def logits(self, tokens: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.model(**self._inputs(self.teacher_inputs(tokens), labels), use_cache=False).logits

    def _inputs(self, ids: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """The model's input for ids [B, L]: the ids themselves, or (conditional) their embeddings plus the class
        embedding [B, L, E] (positions are added by the model in both cases)."""
        if labels is None and self.class_embedding is None:
            return {"input_ids": ids}
        embedded = self.model.get_input_embeddings()(ids).transpose(0, 1)  # condition() takes batch second
        return {"inputs_embeds": self.condition(embedded, labels).transpose(0, 1)}

    def initial_state(self, batch_size: int) -> Any:
        return None  # the first call creates the cache

    def next_logits(self, token: Tensor, state: Any, labels: Tensor | None = None) -> tuple[Tensor, Any]:
        output = self.model(**self._inputs(token[:, None], labels), cache=state, use_cache=True)
        return output.logits[:, -1], output.cache
