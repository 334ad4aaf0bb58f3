"""The one timing function every engine is measured with: one *round* (a warm-up and a timed window).

A cell is measured in several rounds spread over time (infbench.measure.rounds); this module times one.
Policy (what ``measure`` does in a round, in order):
1. Warm-up: call ``run`` (synchronised like a timed call, its time discarded) until ``warmup_s`` has passed
   and at least ``warmup_min_iters`` calls were made, so that lazy initialisation, allocator growth and
   caches are paid before timing.
2. Timed loop: each iteration is timed on its own by the clock (``perf_counter_ns`` around the call on the
   CPU; a device clock can be plugged in for accelerators). Only ``run`` is inside the timed region: inputs
   are already where the engine reads them and outputs go to pre-allocated buffers.
3. Stopping rule: after ``min_iters`` iterations, stop as soon as the 95 % CI of the median is narrower
   than ``target_ci_rel_width`` of the median ("converged"); otherwise stop at ``max_iters`` ("iteration
   cap") or once the loop has used ``budget_s`` ("time budget"). The reason is recorded, so a cell that did
   not converge is visible as such rather than presented with false precision.
All samples are kept; statistics are computed from them (see infbench.measure.stats).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

from infbench.measure.stats import median_ci, summarize


@dataclass(frozen=True)
class TimingPolicy:
    warmup_s: float = 0.5
    warmup_min_iters: int = 3
    min_iters: int = 10
    max_iters: int = 2000
    budget_s: float = 5.0
    target_ci_rel_width: float = 0.02
    flush_l2: bool = False
    # rounds: the replicates of a cell, interleaved with the other cells of its shape (infbench.measure.rounds)
    rounds: int = 1
    round_spacing_s: float = 0.0
    systematic_rel: float = 0.0
    host_drift: float = 0.0  # between-run s.d. of log host speed (infbench.measure.stats: "Across runs")

    @classmethod
    def from_config(cls, timing: dict) -> "TimingPolicy":
        return cls(**timing)


class Clock(Protocol):
    """Times one call of ``run`` and returns milliseconds."""

    name: str

    def time_ms(self, run: Callable[[], object]) -> float: ...


class HostClock:
    """Wall clock around a synchronous call: right for CPU engines, whose ``run`` returns when done."""

    name = "perf_counter_ns"

    def time_ms(self, run: Callable[[], object]) -> float:
        start = time.perf_counter_ns()
        run()
        return (time.perf_counter_ns() - start) / 1e6


class CudaEventClock:
    """CUDA events recorded around the call on the current stream, then one event synchronisation.

    The interval is device time from the first to the last kernel of the call, including any gaps in which
    the GPU waited for the host to launch work (so launch-bound engines are not flattered). The
    synchronisation after each iteration keeps iterations from overlapping; it is outside the interval.
    With ``flush_l2`` a buffer twice the L2 size is overwritten before each iteration (outside the
    interval), so every iteration starts with a cold L2 as it would between real requests.
    """

    name = "cuda_event"

    def __init__(self, flush_l2: bool = False):
        import torch

        self.torch = torch
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.flush_buffer = None
        if flush_l2:
            l2_bytes = torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
            self.flush_buffer = torch.empty(2 * l2_bytes, dtype=torch.uint8, device="cuda")
            self.name = "cuda_event+l2_flush"

    def time_ms(self, run: Callable[[], object]) -> float:
        if self.flush_buffer is not None:
            self.flush_buffer.zero_()
        self.start.record()
        run()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end)


def _converged(samples: list[float], target: float) -> bool:
    lo, hi = median_ci(samples)
    median = statistics.median(samples)
    return median > 0 and (hi - lo) / median <= target


def measure(run: Callable[[], object], policy: TimingPolicy, clock: Clock | None = None,
            now: Callable[[], float] = time.perf_counter) -> dict:
    """One round: warm up, time ``run`` per iteration until the stopping rule holds; the round's samples,
    their summary and how the window went (``window``). ``now`` is the budget clock (simulated in tests)."""
    clock = clock or HostClock()
    warmup_iters = 0
    warmup_start = now()
    while True:
        # through the clock, i.e. synchronised like a timed iteration: an engine whose call only enqueues
        # device work (a CUDA-graph replay is one launch) would otherwise queue thousands of calls within
        # the warm-up's wall time, and the window would wait for all of them (measured on the H100: eager
        # fp32 + CUDA graphs, b32 s512, a 0.4 s window took 74 s)
        clock.time_ms(run)
        warmup_iters += 1
        if now() - warmup_start >= policy.warmup_s and warmup_iters >= policy.warmup_min_iters:
            break
    warmup_seconds = now() - warmup_start

    samples: list[float] = []
    stop_reason = "iteration cap"
    loop_start = now()
    next_check = policy.min_iters
    while len(samples) < policy.max_iters:
        samples.append(clock.time_ms(run))
        if len(samples) >= next_check:
            # checking costs a sort; check at a growing stride so the overhead stays a small fraction
            next_check = len(samples) + max(1, len(samples) // 10)
            if _converged(samples, policy.target_ci_rel_width):
                stop_reason = "converged"
                break
        if now() - loop_start >= policy.budget_s and len(samples) >= min(3, policy.min_iters):
            stop_reason = "time budget"
            break
    return {
        **summarize(samples),
        "samples_ms": samples,
        "window": {
            "clock": clock.name,
            "warmup_iters": warmup_iters,
            "warmup_seconds": warmup_seconds,
            "loop_seconds": now() - loop_start,
            "stop_reason": stop_reason,
            "converged": stop_reason == "converged",
        },
    }


def policy_record(policy: TimingPolicy, clock_name: str) -> dict:
    """The policy as stored in a record (what every number of the cell was made with)."""
    return {**asdict(policy), "clock": clock_name}
