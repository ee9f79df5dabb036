"""RelGAN's discriminator: a CNN shared by S embedded representations of the (relaxed) one-hot input.

A class-conditional discriminator (``num_classes > 0``) is a projection discriminator (Miyato & Koyama 2018):
each logit gains <class embedding of the sentence's label, the features its output layers read>. The loss
sees logits as before, so every GAN loss works unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relgan.config import DiscriminatorConfig
from relgan.errors import ConfigError
from relgan.models.layers import class_vectors, linear, truncated_normal_


class Discriminator(nn.Module):
    """Input: token ids [B, T] (real data) or (relaxed) one-hots [B, T, V]; output: logits [B*S].

    Each representation s is one d-wide slice of the input embedding; the convolutions (heights
    ``filter_sizes``, ``num_filters`` or ``filter_counts`` of each), the highway and the output layers are shared
    by all S.
    ``forward(*batches)`` runs the CNN once over all batches together and returns their logits in order;
    a conditional discriminator takes ``labels``, one tensor of class ids [B_i] per batch.
    """

    def __init__(self, config: DiscriminatorConfig, vocab_size: int, seq_len: int, num_classes: int = 0) -> None:
        super().__init__()
        if max(config.filter_sizes) > seq_len:
            raise ConfigError(
                f"discriminator.filter_sizes: the largest filter ({max(config.filter_sizes)}) is longer than "
                f"the sentences (seq_len = {seq_len})"
            )
        self.config = config
        self.num_representations = config.num_representations
        self.representation_dim = config.embedding_dim // config.num_representations
        self.embedding = nn.Parameter(torch.empty(vocab_size, config.embedding_dim))
        truncated_normal_(self.embedding, 1 / math.sqrt(vocab_size))
        d = self.representation_dim
        self.filter_sizes = list(config.filter_sizes)
        counts = config.filter_counts or [config.num_filters] * len(self.filter_sizes)
        # filter k of height `size` is conv_weights[i][k].view(d, size): [C_i, d*size], d-major
        self.conv_weights = nn.ParameterList()
        for size, count in zip(self.filter_sizes, counts, strict=True):
            weight = nn.Parameter(torch.empty(count, size * d))
            truncated_normal_(weight, math.sqrt(2.0 / (size * d)))
            self.conv_weights.append(weight)
        self.conv_biases = nn.ParameterList(nn.Parameter(torch.zeros(count)) for count in counts)
        width = sum(counts)
        self.highway_transform = linear(width, width, bias=False)
        self.highway_gate = linear(width, width, bias=False)
        self.hidden = linear(width, config.hidden_size)
        self.logit = linear(config.hidden_size, 1)
        self.num_classes = num_classes
        # zeros: a conditional discriminator starts as the unconditional one and learns the class term
        self.class_embedding = nn.Parameter(torch.zeros(num_classes, width)) if num_classes else None

    def forward(
        self, *batches: Tensor, dropout_mask: Tensor | None = None, labels: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, ...]:
        """Each batch: ids [B_i, T] or one-hots [B_i, T, V] -> logits [B_i*S], one tensor per batch.

        ``dropout_mask`` [sum_i B_i*S, width]: the dropout multipliers (see :meth:`classify`); ``labels``: the
        class ids [B_i] of each batch (a conditional discriminator only).
        """
        embedded = torch.cat([self.embed(batch) for batch in batches])
        if labels is None:  # the unconditional call, as a classify of your own (or a fast path) expects it
            logits = self.classify(embedded, dropout_mask)
        else:
            logits = self.classify(embedded, dropout_mask, torch.cat(labels))
        return tuple(logits.split([batch.shape[0] * self.num_representations for batch in batches]))

    def embed(self, batch: Tensor) -> Tensor:
        """ids [B, T] (looked up: equal to one_hot @ embedding) or one-hots [B, T, V] -> [B, T, S*d]."""
        if batch.dtype == torch.long:
            return F.embedding(batch, self.embedding)
        return batch @ self.embedding

    def classify(self, embedded: Tensor, dropout_mask: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """embedded [B, T, S*d] -> logits [B*S] (row b*S + s is representation s of sentence b).

        In training mode the highway's output [B*S, width] is multiplied by ``dropout_mask`` (0 for a dropped
        element, 1/(1-p) for a kept one; drawn by :meth:`dropout_mask` when None). ``labels`` [B]: the class
        of each sentence, whose embedding is projected on these features (a conditional discriminator).
        """
        batch, length, _ = embedded.shape
        s, d = self.num_representations, self.representation_dim
        per_rep = embedded.view(batch, length, s, d).permute(0, 2, 3, 1).reshape(batch * s, d, length)
        pooled = []
        for size, weight, bias in zip(self.filter_sizes, self.conv_weights, self.conv_biases, strict=True):
            responses = F.conv1d(per_rep, weight.view(-1, d, size), bias)  # [B*S, C, T - size + 1]
            pooled.append(torch.relu(responses).max(dim=-1).values)
        features = torch.cat(pooled, dim=-1)  # [B*S, width]
        gate = torch.sigmoid(self.highway_gate(features))
        features = gate * torch.relu(self.highway_transform(features)) + (1 - gate) * features
        if self.training and self.config.dropout > 0:
            features = features * (
                self.dropout_mask(features.shape, features.device) if dropout_mask is None else dropout_mask
            )
        return self.output_logits(features, labels)

    def output_logits(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """The output layers: features [B*S, width] -> logits [B*S], plus the projection term
        <class embedding of the sentence, features> for a conditional discriminator (``labels`` [B])."""
        logits = self.logit(self.hidden(features)).squeeze(-1)
        rows = None if labels is None else labels.repeat_interleave(self.num_representations)
        vectors = class_vectors(self.class_embedding, rows, "discriminator")
        return logits if vectors is None else logits + (features * vectors).sum(-1)

    def dropout_mask(self, shape: torch.Size | tuple[int, ...], device: torch.device | str) -> Tensor:
        """Inverted dropout's multipliers [shape]: 0 with probability p, else 1/(1-p)."""
        p = self.config.dropout
        return torch.bernoulli(torch.full(shape, 1 - p, device=device)) / (1 - p)
