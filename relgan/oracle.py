"""The synthetic benchmark of SeqGAN/RelGAN: a randomly initialised LSTM whose samples are the training data.

Every weight is drawn from N(0, 1) under a seed (or read from SeqGAN's fixed oracle: relgan/seqgan_oracle.py),
the initial state is zero and a fixed start token is fed
at the first step. The oracle computes in float64 on the CPU so that the same seed yields the same
weights and the same sampled corpus on any machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from relgan.config import OracleConfig
from relgan.errors import CheckpointError
from relgan.gumbel import categorical_sample
from relgan.seqgan_oracle import oracle_weights

_SAMPLE_CHUNK = 1000


class OracleLSTM(nn.Module):
    """LSTM language model with N(0, 1) weights; ``vocab_size`` outputs, sequences of ``seq_len``."""

    # float64 buffers, registered in __init__
    embedding: Tensor
    weight_ih: Tensor
    weight_hh: Tensor
    bias: Tensor
    weight_out: Tensor
    bias_out: Tensor

    def __init__(self, config: OracleConfig) -> None:
        super().__init__()
        self.config = config
        v, e, h = config.vocab_size, config.embedding_dim, config.hidden_size
        shapes = {
            "embedding": (v, e),
            "weight_ih": (4 * h, e),
            "weight_hh": (4 * h, h),
            "bias": (4 * h,),
            "weight_out": (v, h),
            "bias_out": (v,),
        }
        if config.params is not None:  # SeqGAN's fixed oracle
            for name, weights in oracle_weights(Path(config.params)).items():
                self.register_buffer(name, weights)
            return
        generator = torch.Generator().manual_seed(config.seed)
        for name, shape in shapes.items():
            self.register_buffer(name, torch.randn(shape, generator=generator, dtype=torch.float64))

    def _step(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step: tokens [B] -> logits [B, V], new (h, c) [B, H]."""
        gates = self.embedding[tokens] @ self.weight_ih.T + h @ self.weight_hh.T + self.bias
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h @ self.weight_out.T + self.bias_out, h, c

    def _zero_state(self, batch: int) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch, self.config.hidden_size, dtype=torch.float64, device=self.embedding.device)
        return zeros, zeros.clone()

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator) -> Tensor:
        """Plain multinomial samples: ids [num, seq_len] (int64, on the CPU)."""
        chunks = []
        for start in range(0, num, _SAMPLE_CHUNK):
            batch = min(_SAMPLE_CHUNK, num - start)
            h, c = self._zero_state(batch)
            tokens = torch.full((batch,), self.config.start_token, dtype=torch.long, device=self.embedding.device)
            steps = []
            for _ in range(self.config.seq_len):
                logits, h, c = self._step(tokens, h, c)
                tokens = categorical_sample(torch.softmax(logits, dim=-1).cpu(), generator)
                steps.append(tokens)
                tokens = tokens.to(self.embedding.device)
            chunks.append(torch.stack(steps, dim=1))
        return torch.cat(chunks)

    @torch.no_grad()
    def nll(self, ids: Tensor) -> float:
        """NLL_oracle: mean per-token negative log-likelihood (nats) of ids [N, T] under the oracle."""
        if ids.ndim != 2 or ids.shape[1] != self.config.seq_len:
            raise ValueError(f"expected ids of shape [N, {self.config.seq_len}], got {tuple(ids.shape)}")
        total = sum(-self.log_probs(chunk).sum().item() for chunk in ids.split(_SAMPLE_CHUNK))
        return total / ids.numel()

    @torch.no_grad()
    def log_probs(self, ids: Tensor) -> Tensor:
        """log p(sentence) [N] (float64, on the oracle's device) of ids [N, T]."""
        ids = ids.to(self.embedding.device)
        h, c = self._zero_state(ids.shape[0])
        tokens = torch.full_like(ids[:, 0], self.config.start_token)
        total = torch.zeros(ids.shape[0], dtype=torch.float64, device=ids.device)
        for t in range(self.config.seq_len):
            logits, h, c = self._step(tokens, h, c)
            total += torch.log_softmax(logits, dim=-1).gather(1, ids[:, t : t + 1]).squeeze(1)
            tokens = ids[:, t]
        return total


@torch.no_grad()
def build_oracle_corpus(config: OracleConfig) -> tuple[OracleLSTM, Tensor, Tensor]:
    """The oracle and its training and test samples ([num_train, T], [num_test, T]) for ``config``."""
    oracle = OracleLSTM(config)
    generator = torch.Generator().manual_seed(config.seed + 1)
    train = oracle.sample(config.num_train, generator)
    test = oracle.sample(config.num_test, generator)
    return oracle, train, test


def save_oracle_corpus(path: Path, oracle: OracleLSTM, train: Tensor, test: Tensor) -> None:
    """Weights and samples in one safetensors file (written atomically)."""
    tensors = {f"oracle.{name}": buf.contiguous() for name, buf in oracle.named_buffers()}
    tensors["train_ids"] = train.contiguous()
    tensors["test_ids"] = test.contiguous()
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"config": json.dumps(asdict(oracle.config))})
    tmp.replace(path)


def load_oracle_corpus(path: Path, config: OracleConfig) -> tuple[OracleLSTM, Tensor, Tensor]:
    """Reload what :func:`save_oracle_corpus` wrote; the stored config must equal ``config``."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            stored = json.loads(handle.metadata()["config"])
    except Exception as exc:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read the oracle file ({exc}); delete it to regenerate") from None
    if stored != asdict(config):
        changed = sorted(k for k in stored if stored[k] != asdict(config).get(k))
        raise CheckpointError(
            f"{path}: oracle was built with other settings (data.oracle.{changed[0]} = {stored[changed[0]]!r}); "
            "use the run's own config or a new run.name"
        )
    oracle = OracleLSTM(config)
    for name, _ in list(oracle.named_buffers()):
        setattr(oracle, name, tensors[f"oracle.{name}"])
    return oracle, tensors["train_ids"], tensors["test_ids"]
