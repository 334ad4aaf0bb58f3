"""A cheap probe of the host CPU's state, taken at the start of every round and stored with it.

Why: on a GPU host the CPU's speed moves in regimes of seconds to tens of seconds (a fixed pure-Python loop
was measured at 6-78 ms, median 13, within 100 s), and a launch-bound cell's latency moves with it. The probe
times a fixed CPU workload (the same bytecode every time, so its time is the host's speed as Python sees it)
and reads what the OS exposes: CPU MHz, steal time (a virtual machine's CPU taken by its hypervisor) and the
load average. A host-bound cell whose rounds differ can then be read beside its probes.
"""

from __future__ import annotations

import os
import time

import psutil

WORKLOAD_ITERS = 20_000  # ~1-3 ms of pure Python on current CPUs: cheap enough for every round


def _workload() -> int:
    total = 0
    for i in range(WORKLOAD_ITERS):
        total += i * i % 7
    return total


def cpu_seconds() -> dict:
    """Cumulative CPU seconds (all CPUs) by kind; steal is None where the OS does not report it."""
    times = psutil.cpu_times()
    return {"total": sum(times), "steal": getattr(times, "steal", None)}


def probe(repeats: int = 3) -> dict:
    """The fixed workload's fastest of ``repeats`` (ms), CPU MHz, load average, cumulative CPU seconds."""
    spans = []
    for _ in range(repeats):
        start = time.perf_counter()
        _workload()
        spans.append((time.perf_counter() - start) * 1e3)
    try:
        freq = psutil.cpu_freq()
        mhz = float(freq.current) if freq else None
    except (OSError, NotImplementedError, FileNotFoundError):
        mhz = None
    return {"probe_ms": min(spans), "cpu_mhz": mhz, "load1": os.getloadavg()[0], "cpu_s": cpu_seconds()}


def steal_pct(before: dict, after: dict) -> float | None:
    """Share of all CPU time between two probes that the hypervisor stole (percent), where reported."""
    b, a = before.get("cpu_s") or {}, after.get("cpu_s") or {}
    if b.get("steal") is None or a.get("steal") is None:
        return None
    total = a["total"] - b["total"]
    return 100.0 * (a["steal"] - b["steal"]) / total if total > 0 else 0.0
