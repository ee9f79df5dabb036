"""Parity checks: a fast path against the reference module it replaces, outputs and every gradient.

Each check builds its inputs from a private seeded generator and runs three computations on them (the same
noise and dropout masks passed in): the fast path, the reference in float32, and the reference in float64 on a
float64 copy of the module (the truth). The fast path passes when its error against the truth is within a
tolerance, or within a few times the float32 reference's own error: it must be as accurate as the code it
replaces, wherever rounding grows (a long recurrence, a large vocabulary). A check returns the mismatches it
found (empty: equal). The backend runs them as a small probe at first use on a machine (``backend.py``),
``python -m relgan.fast.verify`` and the tests at sizes that run every code path.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from relgan.fast.build import Kernels
from relgan.models.discriminator import Discriminator
from relgan.models.generator import Generator
from relgan.models.relational_memory import RelationalMemory

# |fast - truth| <= max(RTOL * max |truth| + ATOL, SLACK * |float32 reference - truth|), per tensor
RTOL, ATOL, SLACK = 1e-4, 1e-6, 8.0

# one computation: (module, dtype) -> {name: tensor}, outputs and gradients
Run = Callable[[Any, torch.dtype], dict[str, Tensor | None]]
M = TypeVar("M", bound=nn.Module)


def mismatch(
    name: str, got: Tensor, want: Tensor, rtol: float = RTOL, atol: float = ATOL, reference: Tensor | None = None
) -> list[str]:
    """[] if ``got`` equals ``want`` within the tolerance (or within SLACK times the error of ``reference``,
    another computation of ``want``), else one line saying by how much it differs."""
    if got.shape != want.shape:
        return [f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"]
    got, want = got.double(), want.double()
    if not got.numel():
        return []
    error = (got - want).abs().max().item()
    bound = rtol * want.abs().max().item() + atol
    if reference is not None:
        bound = max(bound, SLACK * (reference.double() - want).abs().max().item())
    if not error <= bound:  # NaN fails too
        return [f"{name}: max |fast - reference| = {error:.3g} > {bound:.3g}"]
    return []


def compare(module: nn.Module, reference: Run, fast: Run, prefix: str = "") -> list[str]:
    """The fast computation against the reference on ``module`` (float32) and on a float64 copy (the truth)."""
    truth = reference(copy.deepcopy(module).double(), torch.float64)
    float32, got = reference(module, torch.float32), fast(module, torch.float32)
    problems = []
    for name, value in truth.items():
        if (value is None) != (got.get(name) is None):
            problems.append(f"{prefix}{name}: a gradient is missing on one side")
        elif value is not None and name.startswith("tokens"):  # integers: equal or wrong
            if not torch.equal(_present(got[name]), _present(float32[name])):
                problems.append(f"{prefix}tokens differ")
        elif value is not None:
            problems += mismatch(prefix + name, _present(got[name]), value, reference=float32[name])
    return problems


def _present(value: Tensor | None) -> Tensor:
    if value is None:
        raise ValueError("a value is missing on one side")
    return value


def check_relational_memory(
    core: RelationalMemory, kernels: Kernels, batch: int = 3, steps: int = 4, seed: int = 0, scale: float = 1.0
) -> list[str]:
    """The kernel's ``unroll`` (outputs, gradients of inputs, memory and every weight) and no-grad ``step``.
    ``scale`` shrinks the inputs and the memory (a small variance makes the layer norms' epsilon count)."""
    from relgan.fast import relational_memory as fast

    rng = torch.Generator().manual_seed(seed)
    embedded = scale * torch.randn(steps, batch, core.input_projection.in_features, generator=rng)
    memory = scale * (
        core.initial_state(batch, "cpu") + torch.randn(batch, core.mem_slots, core.mem_size, generator=rng)
    )
    upstream = torch.randn(batch, steps, core.output_size, generator=rng)

    def run(unroll: Callable, step: Callable) -> Run:
        def computation(module: RelationalMemory, dtype: torch.dtype) -> dict[str, Tensor | None]:
            x, start = embedded.to(dtype).requires_grad_(), memory.to(dtype).requires_grad_()
            with _fresh_grads(module):
                outputs = unroll(module, module.project_inputs(x), start)
                (outputs * upstream.to(dtype)).sum().backward()
                result = {"outputs": outputs.detach(), **_grads(module), "inputs": x.grad, "initial memory": start.grad}
            with torch.no_grad():
                result["step (no grad)"] = step(module, tuple(p[0] for p in module.project_inputs(x)), start)[0]
            return result

        return computation

    fast_run = run(lambda m, i, s: fast.unroll(m, kernels, i, s), lambda m, i, s: fast.step(m, kernels, i, s))
    return compare(core, run(RelationalMemory.unroll, RelationalMemory.step), fast_run)


def check_generator(
    generator: Generator, kernels: Kernels, batch: int = 3, seed: int = 0, record: bool = True
) -> list[str]:
    """``token_nll`` (values, every gradient), ``sample`` with gradients through the relaxed one-hots (the
    same Gumbel noise; with ``record`` and a relational memory the steps recorded on its kernel and one
    backward replayed for all: a whole G step against the reference; soft and straight-through),
    ``sample_tokens`` (the same tokens from the same uniforms) and ``rollout`` (the prefixes kept, the first
    drawn token of each row the same from the same uniforms)."""
    from relgan.fast import generator as fast
    from relgan.fast.relational_memory import RecordedSteps

    recordable = record and isinstance(generator.core, RelationalMemory)
    rng = torch.Generator().manual_seed(seed)
    shape = (batch, generator.seq_len, generator.vocab_size)
    tokens = torch.randint(generator.vocab_size, shape[:2], generator=rng)
    noise = -torch.log(-torch.log(torch.rand(shape, generator=rng).clamp(min=1e-30)))
    upstream = torch.randn(shape, generator=rng)
    weights = torch.rand(shape[:2], generator=rng)
    # rollouts of each sentence from no prefix, a prefix of one token, half of it and all but its last token
    starts = torch.tensor(sorted({0, 1, generator.seq_len // 2, generator.seq_len - 1}))
    lengths = starts.repeat(batch)
    prefixes = tokens.repeat_interleave(len(starts), dim=0)
    uniforms = torch.rand(prefixes.shape, generator=rng)

    def run(token_nll: Callable, sample: Callable, sample_tokens: Callable, rollout: Callable) -> Run:
        def computation(module: Generator, dtype: torch.dtype) -> dict[str, Tensor | None]:
            result = {}
            with _fresh_grads(module):
                values = token_nll(module, tokens)
                (values * weights.to(values.dtype)).sum().backward()
                result.update({"token_nll": values.detach(), **_prefixed("token_nll ", _grads(module))})
            for hard in (False, True):
                with _fresh_grads(module):
                    drawn, relaxed = sample(module, batch, 3.0, hard=hard, noise=noise.to(dtype))
                    (relaxed * upstream.to(relaxed.dtype)).sum().backward()
                    result.update(_prefixed(f"sample(hard={hard}) ", {"relaxed": relaxed.detach(), **_grads(module)}))
                    result[f"tokens of sample(hard={hard})"] = drawn
            first = sample_tokens(module, batch, generator=torch.Generator().manual_seed(seed))[:, 0]
            result["tokens"] = first  # later steps may differ after a near-tie rounds the other way
            completed = rollout(module, prefixes, lengths, uniforms)
            kept = torch.arange(generator.seq_len) < lengths.unsqueeze(1)
            result["tokens of rollout prefixes"] = completed[kept]
            result["tokens of rollouts, first drawn"] = completed[lengths < generator.seq_len].gather(
                1, lengths[lengths < generator.seq_len].unsqueeze(1)
            )
            return result

        return computation

    def fast_sample(module, *args, **kwargs):
        recorder = (lambda: RecordedSteps(module.core, kernels)) if recordable else None
        return fast.sample(module, kernels, *args, recorder=recorder, **kwargs)

    reference = run(Generator.token_nll, Generator.sample, Generator.sample_tokens, Generator.rollout)
    fast_run = run(
        lambda m, t: fast.token_nll(m, kernels, t),
        fast_sample,
        lambda m, b, **k: fast.sample_tokens(m, kernels, b, **k),
        lambda m, *a: fast.rollout(m, kernels, *a),
    )
    return compare(generator, reference, fast_run)


def check_discriminator(discriminator: Discriminator, kernels: Kernels, batch: int = 3, seed: int = 0) -> list[str]:
    """``classify`` in training mode with the same dropout mask (and in evaluation mode): logits, the gradient
    of the (relaxed one-hot) input and of every weight, and every weight's gradient of the squared input
    gradient (the double backward of the WGAN-GP penalty)."""
    from relgan.fast import discriminator as fast

    d = discriminator
    rng = torch.Generator().manual_seed(seed)
    vocab, length = d.embedding.shape[0], max(d.filter_sizes) + 4
    one_hots = torch.softmax(3 * torch.randn(batch, length, vocab, generator=rng), dim=-1)
    width = d.highway_gate.in_features
    keep = torch.rand(batch * d.num_representations, width, generator=rng) >= d.config.dropout
    mask = keep.float() / (1 - d.config.dropout)
    upstream = torch.randn(batch * d.num_representations, generator=rng)
    # a conditional discriminator also gets each sentence's class (drawn last: the other inputs stay as they were)
    labels = (torch.randint(d.num_classes, (batch,), generator=rng),) if d.num_classes else ()

    def run(classify: Callable) -> Run:
        def computation(module: Discriminator, dtype: torch.dtype) -> dict[str, Tensor | None]:
            result = {}
            for training in (True, False):
                x = one_hots.to(dtype).requires_grad_()
                with _fresh_grads(module), _mode(module, training):
                    logits = classify(module, module.embed(x), mask.to(dtype), *labels)
                    (logits * upstream.to(dtype)).sum().backward()
                    grads = {"logits": logits.detach(), **_grads(module), "input": x.grad}
                result.update(_prefixed(f"train={training} ", grads))
                x = one_hots.to(dtype).requires_grad_()
                with _fresh_grads(module), _mode(module, training):  # second order, as in the WGAN-GP penalty
                    logits = classify(module, module.embed(x), mask.to(dtype), *labels)
                    (grad,) = torch.autograd.grad((logits * upstream.to(dtype)).sum(), x, create_graph=True)
                    grad.square().sum().backward()
                    result.update(_prefixed(f"second order, train={training} ", _grads(module)))
            return result

        return computation

    return compare(d, run(Discriminator.classify), run(lambda m, e, k, *y: fast.classify(m, kernels, e, k, *y)))


CHECKS: dict[str, Callable[..., list[str]]] = {
    "relational_memory": check_relational_memory,
    "generator": check_generator,
    "discriminator": check_discriminator,
}


def probe(unit: str, module: nn.Module, kernels: Kernels, **options: bool) -> list[str]:
    """A small parity check of ``module``'s unit at its own sizes, on a copy (the module and the global RNG
    stay untouched)."""
    with torch.random.fork_rng(devices=[]):
        return CHECKS[unit](copy.deepcopy(module), kernels, batch=2, **options)


# ------------------------------------------------------------------------------------------------ helpers


def _prefixed(prefix: str, values: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    return {prefix + name: value for name, value in values.items()}


def _grads(module: nn.Module) -> dict[str, Tensor | None]:
    return {name: p.grad.clone() if p.grad is not None else None for name, p in module.named_parameters()}


@contextlib.contextmanager
def _fresh_grads(module: nn.Module) -> Iterator[None]:
    module.zero_grad(set_to_none=True)
    try:
        yield
    finally:
        module.zero_grad(set_to_none=True)


@contextlib.contextmanager
def _mode(module: nn.Module, training: bool) -> Iterator[None]:
    was = module.training
    module.train(training)
    try:
        yield
    finally:
        module.train(was)


# ------------------------------------------------------------------------------------------ coverage sizes


@dataclass(frozen=True)
class Case:
    """One parity check at sizes chosen to run some code path of a kernel."""

    unit: str
    label: str
    build: Callable[[], nn.Module]
    options: dict = field(default_factory=dict)

    def run(self, kernels: Kernels) -> list[str]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the module's initial weights
            module = self.build()
        return CHECKS[self.unit](module, kernels, **self.options)


def _perturbed(module: M, seed: int = 1, scale: float = 0.2) -> M:
    """``module`` with every weight moved away from its initial value (unit norms, zero biases)."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=rng))
    return module


def _rmc(slots: int, heads: int, head_size: int, embedding: int = 6, **attributes: float) -> Callable[[], nn.Module]:
    """A perturbed relational memory; ``attributes`` set the forget bias or the layer norms' epsilon, which the
    kernel takes as arguments."""

    def build() -> nn.Module:
        core = _perturbed(RelationalMemory(embedding, slots, heads, head_size))
        core.forget_bias = attributes.get("forget_bias", core.forget_bias)
        for norm in (core.qkv_norm, core.attention_norm, core.mlp_norm):
            norm.eps = attributes.get("eps", norm.eps)
        return core

    return build


def _generator(vocab: int, seq_len: int, scale: float = 0.2, **config) -> Callable[[], nn.Module]:
    from relgan.config import GeneratorConfig

    return lambda: _perturbed(Generator(GeneratorConfig(**config), vocab, seq_len, start_id=1), scale=scale)


def _discriminator(vocab: int, seq_len: int, num_classes: int = 0, **config) -> Callable[[], nn.Module]:
    from relgan.config import DiscriminatorConfig

    return lambda: _perturbed(Discriminator(DiscriminatorConfig(**config), vocab, seq_len, num_classes))


# Head sizes cover rows narrower than a vector, a partial last vector and whole vectors; the small scale makes
# the layer norms' epsilon matter. The discriminator's paper sizes (300 filters of heights 2-5 on width-1
# representations) run 9 blocks of 32 filters plus a tail, and every compile-time specialisation of the conv
# max kernel; the other widths run its generic path; vocabularies of 5 and 70 are narrower than one vector
# and whole vectors plus a partial one.
COVERAGE: tuple[Case, ...] = (
    Case("relational_memory", "1 slot, 2 heads of 4", _rmc(1, 2, 4)),
    Case("relational_memory", "2 slots, 1 head of 20", _rmc(2, 1, 20)),
    Case("relational_memory", "3 slots, 2 heads of 12", _rmc(3, 2, 12)),
    Case("relational_memory", "paper: 1 slot, 2 heads of 256", _rmc(1, 2, 256, embedding=32)),
    Case("relational_memory", "small values (epsilon counts)", _rmc(2, 2, 8), {"scale": 1e-5}),
    Case(
        "relational_memory",
        "forget bias 0.3, epsilon 1e-7, small values",
        _rmc(2, 2, 8, forget_bias=0.3, eps=1e-7),
        {"scale": 1e-3},
    ),
    Case("generator", "rmc, vocab 5", _generator(5, 6, embedding_dim=8, mem_slots=2, num_heads=2, head_size=8)),
    Case(
        "generator",
        "rmc, vocab 70, table lookup",
        _generator(70, 7, embedding_dim=8, num_heads=2, head_size=12),
        {"batch": 11},
    ),
    Case(
        "generator",
        "rmc, steps without the recorder",
        _generator(13, 5, embedding_dim=8, num_heads=2, head_size=8),
        {"record": False},
    ),
    Case("generator", "lstm, vocab 70", _generator(70, 6, architecture="lstm", embedding_dim=8, hidden_size=12)),
    Case(
        "generator",
        "paper sizes: COCO vocabulary, 37 steps",
        _generator(4662, 37, scale=0.05, embedding_dim=32, num_heads=2, head_size=256),
        {"batch": 2},
    ),
    Case(
        "discriminator",
        "paper: 300 filters of 2-5 on width 1",
        _discriminator(
            60,
            12,
            embedding_dim=64,
            num_representations=64,
            filter_sizes=[2, 3, 4, 5],
            num_filters=300,
            hidden_size=100,
            dropout=0.25,
        ),
    ),
    Case(
        "discriminator",
        "width 3, 37 filters of 2, 3 and 6",
        _discriminator(
            11,
            9,
            embedding_dim=12,
            num_representations=4,
            filter_sizes=[2, 3, 6],
            num_filters=37,
            hidden_size=7,
            dropout=0.25,
        ),
    ),
    Case(
        "discriminator",
        "width 1, 5 filters of 1 and 4, no dropout",
        _discriminator(
            9, 7, embedding_dim=4, num_representations=4, filter_sizes=[1, 4], num_filters=5, hidden_size=6, dropout=0.0
        ),
    ),
    Case(
        "discriminator",
        "SeqGAN's: one width-16 representation, 1-10, 15, 20 with 2-9 filters each",
        _discriminator(
            13,
            22,
            embedding_dim=16,
            num_representations=1,
            filter_sizes=[*range(1, 11), 15, 20],
            filter_counts=[2, 4, 4, 4, 4, 2, 2, 2, 2, 2, 9, 9],
            hidden_size=5,
            dropout=0.25,
        ),
    ),
    Case(
        "discriminator",
        "projection discriminator, 3 classes, width 2",
        _discriminator(
            11,
            8,
            num_classes=3,
            embedding_dim=8,
            num_representations=4,
            filter_sizes=[2, 3],
            num_filters=19,
            hidden_size=5,
            dropout=0.25,
        ),
    ),
)
