"""One round of generations: the shared timing policy (infbench.measure.timing) applied to whole generations.

A timed call is one generation. The backend calls ``mark()`` after its first token and after each decode
step; the clock records there what it can without adding a synchronisation: a CUDA event on the current
stream (GPU: the events are read after the generation, with one synchronisation), or the host's clock (CPU,
where every step returns when done). TTFT is the start → first mark (prefill and its argmax); step i is
mark i → mark i+1. Per the policy: warm up for ``warmup_s`` (at least ``warmup_min_iters`` generations),
then generate until the 95 % CI of the median step is narrower than ``target_ci_rel_width`` (after
``min_iters`` generations' steps), or ``budget_s`` or ``max_iters`` generations are spent.

The round's ``samples_ms`` are every decode step of its generations, so its ``median_ms`` is the time per
output token (TPOT) and the across-round statistics and paired comparisons apply unchanged; TTFT, each
step position's median, and the end-to-end time per generation are kept beside them.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from infbench.measure.stats import median_ci, summarize
from infbench.measure.timing import TimingPolicy


class HostMarks:
    name = "perf_counter_ns per token"

    def start(self) -> None:
        self.times = [time.perf_counter_ns()]

    def mark(self) -> None:
        self.times.append(time.perf_counter_ns())

    def intervals_ms(self) -> list[float]:
        return [(b - a) / 1e6 for a, b in zip(self.times, self.times[1:])]


class CudaMarks:
    """Events recorded at every mark on the current stream (a pool reused across generations), one
    synchronisation on the last event when the generation is read."""

    name = "cuda_event per token"

    def __init__(self, marks: int):
        import torch

        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(marks + 1)]
        self.used = 0

    def start(self) -> None:
        self.used = 1
        self.events[0].record()

    def mark(self) -> None:
        self.events[self.used].record()
        self.used += 1

    def intervals_ms(self) -> list[float]:
        last = self.events[self.used - 1]
        last.synchronize()
        return [a.elapsed_time(b) for a, b in zip(self.events[:self.used - 1], self.events[1:self.used])]


def marks_for(device: str, new_tokens: int):
    return CudaMarks(new_tokens) if device == "cuda" else HostMarks()


def timed_generation(generate: Callable, marks) -> list[float]:
    """[TTFT, step 1, …, step n-1] of one generation, in ms."""
    marks.start()
    generate(marks.mark)
    return marks.intervals_ms()


def measure(generate: Callable, policy: TimingPolicy, marks, now: Callable[[], float] = time.perf_counter) -> dict:
    """One round of generations (module docstring): the round dict that ``infbench.measure.rounds`` keeps."""
    warmup_start, warmup_iters = now(), 0
    while True:
        timed_generation(generate, marks)
        warmup_iters += 1
        if now() - warmup_start >= policy.warmup_s and warmup_iters >= policy.warmup_min_iters:
            break
    warmup_seconds = now() - warmup_start
    generations: list[list[float]] = []
    steps: list[float] = []
    stop_reason, loop_start = "iteration cap", now()
    while len(generations) < policy.max_iters:
        times = timed_generation(generate, marks)
        generations.append(times)
        steps.extend(times[1:])
        if len(steps) >= policy.min_iters and len(steps) > 1:
            lo, hi = median_ci(steps)
            median = statistics.median(steps)
            if median > 0 and (hi - lo) / median <= policy.target_ci_rel_width and len(generations) >= 2:
                stop_reason = "converged"
                break
        if now() - loop_start >= policy.budget_s and len(generations) >= 2:
            stop_reason = "time budget"
            break
    if not steps:  # a generation of one token has no decode step: its time per token is its TTFT
        steps = [g[0] for g in generations]
    by_position = list(zip(*[g[1:] for g in generations])) if generations[0][1:] else []
    return {
        **summarize(steps),
        "samples_ms": steps,
        "ttft_ms": [g[0] for g in generations],
        "e2e_ms": [sum(g) for g in generations],
        "step_medians_ms": [statistics.median(p) for p in by_position],
        "window": {"clock": marks.name, "warmup_iters": warmup_iters, "warmup_seconds": warmup_seconds,
                   "loop_seconds": now() - loop_start, "stop_reason": stop_reason,
                   "converged": stop_reason == "converged", "generations": len(generations)},
    }
