"""Whole training steps as CUDA graphs on a single GPU.

The relational memory unrolls into thousands of small kernels per step (37 time steps, forward and
backward), so on a GPU a step costs launch and Python overhead rather than arithmetic. Capturing the
whole step (forward, backward, clipping, optimiser update) once and replaying it removes that overhead
without changing any computation. Random numbers stay reproducible: a replay draws from the CUDA
generator's state at replay time, which the trainer reseeds before every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

logger = logging.getLogger("relgan")


class StepGraph:
    """Runs ``step(*inputs) -> tuple of tensors`` eagerly for ``warmup`` calls (on a side stream, as capture
    requires), then captures it and replays it, copying inputs into static buffers and cloning outputs.

    If capture fails, the step falls back to eager execution with a warning. Tensors captured by the
    graph (parameters, gradients, optimiser state) must keep their storage: do not reload state after the
    first replay.
    """

    def __init__(self, step: Callable[..., tuple[Tensor, ...]], enabled: bool, name: str, warmup: int = 3) -> None:
        self.step, self.enabled, self.name, self.warmup = step, enabled, name, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: list[Tensor] = []
        self.static_outputs: tuple[Tensor, ...] = ()

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if not self.enabled:
            return self.step(*inputs)
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = self.step(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        graph = self.graph or self._capture(inputs)
        if graph is None:
            return self.step(*inputs)
        for static, value in zip(self.static_inputs, inputs, strict=True):
            static.copy_(value)
        graph.replay()
        return tuple(output.clone() for output in self.static_outputs)

    def _capture(self, inputs: tuple[Tensor, ...]) -> torch.cuda.CUDAGraph | None:
        """The step captured on static copies of ``inputs`` (None: it could not be captured)."""
        self.static_inputs = [value.clone() for value in inputs]
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.static_outputs = self.step(*self.static_inputs)
        except Exception as exc:  # an op that cannot be captured; the step still works eagerly
            logger.warning(
                "%s: CUDA graph capture failed (%s); continuing without CUDA graphs",
                self.name,
                str(exc).strip().splitlines()[0][:200],
            )
            self.enabled = False
            torch.cuda.synchronize()
            return None
        self.graph = graph
        return graph

    def release(self) -> None:
        """Free the graph and its memory pool (the step is not used any more)."""
        self.graph, self.static_inputs, self.static_outputs = None, [], ()
