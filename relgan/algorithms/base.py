"""The interface of an algorithm: how the generator gets its gradient through discrete tokens.

An algorithm is one module in this package: a subclass of :class:`Algorithm` that sets ``name`` registers itself,
and everything about it is declared on the class (its capabilities, its own options, the keys of other sections it
reads, what it needs of the config). It says what one generator step draws, the generator's loss on those draws,
and what the discriminator is shown of the fake samples. The adversarial iteration (relgan/adversarial.py) calls
these for single runs and batched replicas alike, and nothing outside this package looks at an algorithm's name.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from relgan.adversarial import FakeBatch, Network
from relgan.config import AlgorithmSpec, Config, NoOptions
from relgan.draws import Draws

# every algorithm class that set its name, in the order they were defined (relgan.algorithms imports them all)
REGISTERED: dict[str, type[Algorithm]] = {}
# the keys a relaxed algorithm reads (what the discriminator sees depends on beta)
BETA_KEYS = ("gumbel.beta_max", "gumbel.schedule", "gumbel.horizon")

# A score of complete sentences: (ids [B, T] or (relaxed) one-hots [B, T, V], classes [B] or None) -> [B]
Score = Callable[[Tensor, Tensor | None], Tensor]


@dataclass
class LearnedParts:
    """An estimator's own trainable parameters beyond the generator's (REBAR's and RELAX's control variates)."""

    module: nn.Module
    lr: float  # of their Adam parameter group, beside the generator's


class Algorithm:
    """One way of training the generator against the discriminator.

    Capabilities, read by the loop instead of the name:
    ``relaxed``: the discriminator sees a function of softmax(beta (o + g)), so beta (the gumbel keys) counts and
    is logged; ``batched``: every draw of a step is made outside it (run.replicas=batched can vmap it);
    ``cuda_graphs``: its iteration has been measured captured as a CUDA graph (others run eagerly on a GPU);
    ``unbiased``: its estimate's mean is the exact gradient of E[f(one_hot(x))] (the lab tests it).

    Declarations, read by the config, --help, the tests and the benches:
    ``summary``: one line for --help; ``label``: its name in result tables (not inherited; default ``name``);
    ``Options``: a dataclass of :func:`relgan.config.setting` fields, its own
    keys (written in the adversarial section, read as ``self.options``); ``shared_keys``: keys of other sections
    that count only for the algorithms that list them; ``requires``: dotted key -> (the value it needs, why);
    ``legacy_switch``: a boolean key of old configs that meant this algorithm (not inherited); :meth:`obstacle`:
    anything else it cannot train; ``small``: options of a small, quick run (the tests), where its defaults are
    costly.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    relaxed: ClassVar[bool]
    batched: ClassVar[bool] = True
    cuda_graphs: ClassVar[bool] = False
    unbiased: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions
    shared_keys: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[typing.Mapping[str, tuple[Any, str]]] = {}
    legacy_switch: ClassVar[str | None] = None
    small: ClassVar[typing.Mapping[str, Any]] = {}
    learned: nn.Module | None = None  # the module of its learned_parts, once the caller attached it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a family's base, or a variant of an algorithm in a test
            return
        if cls.name in REGISTERED:
            raise TypeError(f"two algorithms are named {cls.name!r}: {REGISTERED[cls.name]} and {cls}")
        REGISTERED[cls.name] = cls

    def __init__(self, config: Config) -> None:
        self.config = config.adversarial
        if not isinstance(config.adversarial.options, self.Options):
            raise TypeError(
                f"adversarial.options of {config.adversarial.algorithm!r} is a {type(config.adversarial.options)}, "
                f"not {self.name}'s {self.Options} (build configs with relgan.plugins.load_config)"
            )
        self.options = config.adversarial.options

    @classmethod
    def spec(cls) -> AlgorithmSpec:
        """What the config engine checks a config against."""
        switch = cls.__dict__.get("legacy_switch")  # a subclass is another algorithm: the old key did not mean it
        return AlgorithmSpec(cls.name, cls.summary, cls.Options, cls.shared_keys, cls.requires, cls.obstacle, switch)

    @classmethod
    def row_label(cls) -> str:
        """Its name in result tables ("RelGAN(100), last"): its own ``label``, else its ``name``."""
        return cls.__dict__.get("label", cls.name)

    @classmethod
    def lab_estimators(cls) -> dict[str, dict[str, Any]]:
        """The settings the exact-gradient lab measures (experiments/gradient_lab.py): label -> options."""
        return {cls.name: {}}

    @classmethod
    def overrides(cls, small: bool = False) -> list[str]:
        """Command-line overrides that choose this algorithm and meet what it ``requires`` (``small``: with its
        options of a small run)."""
        chosen = [f"adversarial.algorithm={cls.name}", *(f"{key}={value}" for key, (value, _) in cls.requires.items())]
        return chosen + [f"adversarial.{key}={value}" for key, value in cls.small.items()] if small else chosen

    @classmethod
    def obstacle(cls, config: Config) -> str | None:
        """Why this algorithm cannot train ``config`` (None if it can) beyond ``requires``: a one-line reason."""
        return None

    @classmethod
    def step_floats(cls, config: Config, seq_len: int, vocab_size: int) -> tuple[int, str]:
        """(about how many float32s its generator step holds besides the generator's own activations, the key
        that sizes them), so that impossible sizes are refused before they are allocated."""
        return 0, "adversarial.batch_size"

    def learned_parts(self, vocab_size: int, seq_len: int) -> LearnedParts | None:
        """New trainable parameters of the estimator itself (None: it has none), trained by the gradient of
        :meth:`generator_loss` with respect to them. The caller moves and prepares the module, attaches it as
        ``self.learned``, trains it at ``lr`` with the generator's optimiser outside the generator's gradient
        clipping, and checkpoints it with the generator."""
        return None

    def generator_step_draws(self, draws: Draws, size: int) -> Any:
        """The random draws of one generator step on ``size`` sentences (a dataclass registered as a pytree).

        Order: what the step draws itself first, then what the models may draw where they use it (Gumbel noise,
        dropout masks), in the order the step uses it: a single run leaves the latter to the models.
        """
        raise NotImplementedError

    def generator_loss(
        self, generator: Network, discriminator: Network, beta: Tensor, step: Any
    ) -> tuple[Tensor, Tensor]:
        """(the loss whose gradient trains the generator, the adversarial objective it lowers, logged as g_loss);
        the discriminator is a fixed function here."""
        raise NotImplementedError

    def sample_draws(self, draws: Draws, count: int) -> Any:
        """The random draws of the ``count`` fake samples of the discriminator steps."""
        raise NotImplementedError

    def fake_samples(self, generator: Network, beta: Tensor, samples: Any, count: int, size: int) -> list[FakeBatch]:
        """``count`` batches of ``size`` fake samples, as the discriminator sees them (call without gradients).

        The generator does not change during the discriminator steps, so their samples are drawn in one pass of
        d_steps * B sentences: the same distribution, far better matrix shapes.
        """
        raise NotImplementedError

    def gradient_estimate(self, generator: Network, score: Score, beta: Tensor, step: Any) -> Tensor:
        """A scalar whose gradient estimates -grad E_{x ~ G}[sigmoid(score(one_hot(x)))] (the exact-gradient lab,
        experiments/gradient_lab.py): this algorithm's estimator with a fixed ``score`` as the discriminator."""
        raise NotImplementedError


def split_fakes(samples: Tensor, labels: Tensor | None, count: int, size: int) -> list[FakeBatch]:
    """``count`` batches of ``size`` from samples [count * size, ...] and their classes [count * size] or None."""
    parts = [None] * count if labels is None else labels.split(size)
    return [FakeBatch(batch, batch_labels) for batch, batch_labels in zip(samples.split(size), parts, strict=True)]
