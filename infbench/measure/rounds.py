"""The replicates of a measurement: every cell of a shape timed in interleaved, shuffled rounds.

Why rounds, not iterations: the host CPU's speed drifts in regimes of seconds to tens of seconds, so the
iterations of one window share one host state and their spread says nothing about a rerun minutes later
(measured: 4 of 54 independent re-measurements fell inside single-window 95 % intervals). A round is one
warm-up + timed window (infbench.measure.timing.measure) with its start time and a probe of the host; a cell
gets ``policy.rounds`` of them.

Why interleaved: in each round every cell of the shape is timed once, in a freshly shuffled order (as
PyTorch's dynamo harness alternates eager and compiled in every repetition, and Google Benchmark shuffles
repetitions), so the baseline and each candidate are measured seconds apart, and their per-round ratio
cancels a drift that moves both. Shuffling keeps a fixed position (first after a pause, last) from biasing
one backend.

Why spaced: rounds start at least ``policy.round_spacing_s`` apart, so a cell's rounds span (rounds - 1) x
spacing of wall time and sample several host regimes. On a GPU host the other shapes' rounds fill that time
(sessions take turns on the host's timing lock): the GPU idles only when no session has a round due.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Callable, ContextManager

from infbench import records
from infbench.measure import host
from infbench.measure.timing import Clock, TimingPolicy, measure


def run_rounds(runners: dict[str, Callable[[], object]], policy: TimingPolicy, clock: Clock, seed: int,
               probe: Callable[[], dict] = host.probe, now: Callable[[], float] = time.perf_counter,
               sleep: Callable[[float], None] = time.sleep, on_step: Callable[[str, int], None] | None = None,
               hold: Callable[[], ContextManager] = contextlib.nullcontext,
               device_state: Callable[[], dict] | None = None,
               window: Callable[..., dict] = measure) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Time every runner in ``policy.rounds`` interleaved rounds: (each runner's list of round dicts,
    {runner: one-line error} for runners that raised -- they leave the rotation, the others go on).

    A round dict: index, started_at (UTC; started_unix: the same in seconds, comparable across sessions),
    offset_s (from the first round's start), position (in that round's order), the window's samples and
    summary (infbench.measure.timing.measure) and host (the probe taken at the round's start, with the steal
    share over the round). ``on_step(name, index)`` is called
    before each window (the session's progress, so a crash or a hang is pinned on the right cell). Each round
    runs inside ``hold()`` (the host's timing lock: infbench.devices.host_exclusive), so that shape sessions
    prepared side by side take turns round by round; the spacing is idled outside it (others' rounds run).
    ``device_state()`` (GPU: SM clock, power, temperature) is sampled right after each window, outside it,
    so that a GPU-bound cell's spread across rounds can be set against the clock (the power limit throttles it).
    ``window(runner, policy, clock, now=)`` times one window: a forward call per iteration by default, whole
    generations for the generation workload (infbench.workloads.generate.timing.measure).
    """
    rng = random.Random(seed)
    names = list(runners)
    results: dict[str, list[dict]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    session_start = now()
    for index in range(max(1, policy.rounds)):
        with hold():
            round_start = now()
            state = probe()
            order = names[:]
            rng.shuffle(order)
            for position, name in enumerate(order):
                if on_step:
                    on_step(name, index)
                started_at, offset, unix = records.now(), now() - session_start, time.time()
                try:
                    timed = window(runners[name], policy, clock, now=now)
                except Exception as error:  # noqa: BLE001 - one engine's failure must not cost the others their rounds
                    errors[name] = f"round {index}: {type(error).__name__}: {records.one_line(str(error))}"
                    names.remove(name)
                    continue
                results[name].append({"index": index, "started_at": started_at, "started_unix": unix,
                                      "offset_s": offset, "position": position, **timed, "host": state,
                                      **({"device": device_state()} if device_state else {})})
            state["steal_pct"] = host.steal_pct(state, probe())
            state.pop("cpu_s", None)
        if index < policy.rounds - 1:
            idle = policy.round_spacing_s - (now() - round_start)
            if idle > 0:
                sleep(idle)
    return results, errors
