"""Decoding rules for sampling text from a generator: temperature, top-k and top-p (nucleus) truncation.

A rule maps one step's logits o [..., V] to the distribution the next token is drawn from:

    p = softmax(o / temperature)
    top-k: keep the k most probable tokens (0: all)
    top-p: keep the smallest set of most probable tokens whose probability reaches p, the token at which the
           running total crosses p included (1: all)

then renormalise what is kept. Temperature applies first, then top-k, then top-p on the renormalised top-k
distribution: the order of Hugging Face's samplers (Holtzman et al. 2020 for top-p; Fan et al. 2018 for top-k).
Ties in probability are broken by token id, so a rule is a function of the logits. A sentence's probability under a
rule is the product of its per-step probabilities: the exact metrics score every sentence that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Decoding:
    """One decoding rule (module docstring)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"a temperature must be a finite number > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be 0 (no truncation) or a number of tokens, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1] (1: no truncation), got {self.top_p}")

    @property
    def truncates(self) -> bool:
        """Whether some tokens get probability 0 (top-k or top-p)."""
        return self.top_k > 0 or self.top_p < 1

    @property
    def label(self) -> str:
        """Short, for tables and plots: "T=0.9", "top-k 40", "T=0.8, top-p 0.95"."""
        parts = [f"T={self.temperature:g}"] if self.temperature != 1 or not self.truncates else []
        parts += [f"top-k {self.top_k}"] if self.top_k else []
        parts += [f"top-p {self.top_p:g}"] if self.top_p < 1 else []
        return ", ".join(parts)

    def probabilities(self, logits: Tensor) -> Tensor:
        """The distribution of the next token [..., V] (float32 or wider) for logits [..., V]."""
        probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)) / self.temperature, dim=-1)
        if not self.truncates:
            return probs
        # descending probability, ties by token id (a stable sort of the negated probabilities)
        order = torch.sort(-probs, dim=-1, stable=True).indices
        ranked = probs.gather(-1, order)
        keep = torch.ones_like(ranked, dtype=torch.bool)
        if self.top_k:
            keep[..., self.top_k :] = False
            ranked = ranked * keep
            ranked = ranked / ranked.sum(dim=-1, keepdim=True)
        if self.top_p < 1:
            before = torch.nn.functional.pad(ranked.cumsum(dim=-1)[..., :-1], (1, 0))  # of those ranked above
            keep &= before < self.top_p
        kept = torch.zeros_like(probs).scatter(-1, order, (ranked * keep).to(probs.dtype))
        return kept / kept.sum(dim=-1, keepdim=True)

    def log_probabilities(self, logits: Tensor) -> Tensor:
        """log of :meth:`probabilities` [..., V]: -inf for the tokens the rule leaves out."""
        if not self.truncates:
            return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)) / self.temperature, -1)
        return self.probabilities(logits).log()


PLAIN = Decoding()  # softmax(o): the generator's own distribution
KEYS = {"T": "temperature", "k": "top_k", "p": "top_p"}


def parse_rules(text: str) -> list[Decoding]:
    """Comma-separated decoding rules: a number is a temperature; otherwise ``T=``, ``k=`` and ``p=`` settings
    joined by ``:`` (``0.8,1.0,k=40,p=0.9,T=0.8:p=0.95``). ValueError in one line for anything else."""
    rules = []
    for item in text.split(","):
        settings: dict[str, float] = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
        try:
            if "=" not in item:
                settings["temperature"] = float(item)
            for part in item.split(":") if "=" in item else []:
                key, _, value = part.partition("=")
                name = KEYS[key.strip()]
                settings[name] = int(value) if name == "top_k" else float(value)
            rules.append(Decoding(settings["temperature"], int(settings["top_k"]), settings["top_p"]))
        except (KeyError, ValueError) as exc:
            detail = f" ({exc})" if isinstance(exc, ValueError) and "must" in str(exc) else ""
            raise ValueError(
                f"{item!r} is not a decoding rule{detail}: give a temperature (0.8) or T=, k=, p= joined by ':' "
                "(k=40, p=0.9, T=0.8:p=0.95)"
            ) from None
    return rules


def rule_of(point: dict) -> Decoding:
    """The rule a sweep point was sampled with (a point written before rules existed has a temperature only)."""
    return Decoding(point.get("temperature", 1.0), point.get("top_k", 0), point.get("top_p", 1.0))


def family(rule: Decoding) -> str:
    """Which curve of a sweep a rule belongs to: temperature, top-k or top-p (each varied alone), or mixed."""
    if not rule.truncates:
        return "temperature"
    if rule.temperature == 1 and not (rule.top_k and rule.top_p < 1):
        return "top-k" if rule.top_k else "top-p"
    return "mixed"
