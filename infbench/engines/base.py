"""What every engine receives and returns: the cell context and the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class CellContext:
    """Everything an engine needs to prepare one cell; inputs come from the shape's reference file."""

    model_dir: Path
    graph_path: Path | None
    inputs: dict[str, np.ndarray]
    precision: str
    options: dict
    device: str
    threads: int
    engine_path: Path | None = None  # a serialized engine built by the build_engine rule (TensorRT engines)

    @property
    def batch(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    @property
    def seq_len(self) -> int:
        return int(next(iter(self.inputs.values())).shape[1])


class CellUnusable(RuntimeError):
    """Raised in ``prepare`` when an upstream step (e.g. an engine build) says the cell cannot run: the cell
    takes that step's status ('unavailable' or 'failed') and reason instead of a generic failure."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


@dataclass
class Runner:
    """A prepared cell. ``run`` is the only thing timed.

    ``prepare`` holds what getting here cost and what it did (seconds, compile counters, fused ops); engines
    fill it in ``prepare`` and may update it in ``verify``.
    """

    prepare: dict = field(default_factory=dict)

    def run(self) -> None:
        """One inference on inputs already on the device, outputs into the engine's buffers."""
        raise NotImplementedError

    def output(self) -> np.ndarray:
        """The last output as a host array (outside the timed region), for the accuracy check."""
        raise NotImplementedError

    def device_peak_bytes(self) -> int | None:
        """Peak device memory of the cell (accelerators only)."""
        return None

    def verify(self) -> str | None:
        """After timing: a reason the timed path was not the one claimed (e.g. eager fallback), or None."""
        return None

    def close(self) -> None:
        """Release memory and sessions."""
