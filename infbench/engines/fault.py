"""An engine that fails on purpose, for testing the fault paths end to end (never for benchmarking).

``options.fault`` picks the failure: ``raise`` (an exception in prepare), ``crash`` (the process dies
without a record, like a segfault), ``hang`` (never returns: the cell timeout must kill it), ``nan``
(non-finite outputs), ``oom`` (an out-of-memory error at the configured batch and above), ``unavailable``
(a missing library), or ``none`` (runs and is timed, but its zeros fail the accuracy check).
"""

from __future__ import annotations

import os
import time

import numpy as np

from infbench.engines.base import CellContext, Runner

FAULTS = ("none", "raise", "crash", "hang", "nan", "oom", "unavailable")


def supports(precision: str, device: str) -> str | None:
    return None


def available(device: str, options: dict) -> str | None:
    if options.get("fault") == "unavailable":
        return "fault engine: library deliberately unavailable"
    return None


def graph(options: dict, precision: str) -> None:
    return None


class FaultRunner(Runner):
    def __init__(self, output: np.ndarray, fault: str):
        super().__init__(prepare={"seconds": 0.0, "what": f"fault engine ({fault})"})
        self.out = output
        self.fault = fault

    def run(self) -> None:
        time.sleep(0.0005)
        if self.fault == "hang":
            while True:
                time.sleep(1)

    def output(self) -> np.ndarray:
        return self.out


def prepare(context: CellContext) -> FaultRunner:
    import json

    fault = context.options.get("fault", "none")
    if fault == "raise":
        raise RuntimeError("fault engine: injected failure")
    if fault == "crash":
        os._exit(139)  # as a segfault would: no record, no traceback
    if fault == "oom" and context.batch >= int(context.options.get("oom_from_batch", 1)):
        raise MemoryError(f"fault engine: out of memory at batch {context.batch}")
    hidden = json.loads((context.model_dir / "config.json").read_text())["hidden_size"]
    output = np.zeros((context.batch, context.seq_len, hidden), dtype=np.float32)
    if fault == "nan":
        output[..., 0] = np.nan
    return FaultRunner(output, fault)
