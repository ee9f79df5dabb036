"""The interface of an algorithm: how the generator gets its gradient through discrete tokens.

An algorithm is one module in this package and its name in ``adversarial.algorithm`` (``config.ALGORITHMS``).
It says what one generator step draws, the generator's loss on those draws, and what the discriminator is shown
of the fake samples. The adversarial iteration (relgan/adversarial.py) calls these for single runs and batched
replicas alike, and nothing outside this package looks at an algorithm's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor

from relgan.adversarial import FakeBatch, Network
from relgan.config import Config
from relgan.draws import Draws

# A score of complete sentences: (ids [B, T] or (relaxed) one-hots [B, T, V], classes [B] or None) -> [B]
Score = Callable[[Tensor, Tensor | None], Tensor]


class Algorithm:
    """One way of training the generator against the discriminator.

    Capabilities, read by the loop instead of the name:
    ``relaxed``: the discriminator sees a function of softmax(beta (o + g)), so beta (the gumbel keys) counts and
    is logged; ``batched``: every draw of a step is made outside it (run.replicas=batched can vmap it);
    ``cuda_graphs``: its iteration has been measured captured as a CUDA graph (others run eagerly on a GPU).
    """

    name: ClassVar[str]
    relaxed: ClassVar[bool]
    batched: ClassVar[bool] = True
    cuda_graphs: ClassVar[bool] = False

    def __init__(self, config: Config) -> None:
        self.config = config.adversarial

    @classmethod
    def obstacle(cls, config: Config) -> str | None:
        """Why this algorithm cannot train ``config`` (None if it can): a one-line reason for the config error."""
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
