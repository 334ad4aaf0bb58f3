"""What a run's timing cost: the timing phase's wall time against the time spent measuring, from the records.

    python3 -m scripts.timing_cost results/cells

Why from the records and not from the jobs' wall times: shape sessions run side by side (infbench/devices.py),
so their wall times overlap and include waiting for each other's rounds. The timing phase is the span from
the first round's start to the last window's end, over every session; measuring is the sum of the windows
(warm-up + timed loop); the rest of the span is rounds' bookkeeping (host probes, lock hand-overs) and any
time no session was ready to time. Preparation is reported per session (it runs in parallel, mostly before
the timing phase).
"""

from __future__ import annotations

import argparse
import json

from infbench import records as record_io


def summary(records: list[dict], since: str | None = None) -> dict:
    """The timing phase of the records' run. ``since`` (ISO 8601, UTC): only sessions whose first round
    started then or later -- a results directory keeps records of earlier runs, which would stretch the span."""
    sessions: dict[str, dict] = {}
    for record in records:
        timing = record.get("timing") or {}
        rounds = [r for r in timing.get("rounds") or [] if r.get("started_unix") is not None]
        if not rounds:  # never timed (unavailable, failed in preparation) or measured before started_unix
            continue
        cost = record.get("cost") or {}
        session = sessions.setdefault(timing.get("session"), {
            "cells": 0, "prepare_s": 0.0, "windows": [], "first": min(r["started_at"] for r in rounds),
            "process_s": cost.get("process_s"), "host_wait_s": cost.get("host_wait_s")})
        session["cells"] += 1
        session["first"] = min(session["first"], *(r["started_at"] for r in rounds))
        session["prepare_s"] += float((record.get("prepare") or {}).get("seconds") or 0.0)
        for r in rounds:
            length = r["window"]["warmup_seconds"] + r["window"]["loop_seconds"]
            session["windows"].append((r["started_unix"], r["started_unix"] + length))
    if since:
        sessions = {k: v for k, v in sessions.items() if v["first"] >= since}
    windows = [w for s in sessions.values() for w in s["windows"]]
    if not windows:
        return {"sessions": len(sessions), "cells": 0}
    span = max(end for _, end in windows) - min(start for start, _ in windows)
    measuring = sum(end - start for start, end in windows)
    process = [s["process_s"] for s in sessions.values() if s["process_s"] is not None]
    waits = [s["host_wait_s"] for s in sessions.values() if s["host_wait_s"] is not None]
    return {"sessions": len(sessions), "cells": sum(s["cells"] for s in sessions.values()), "windows": len(windows),
            "timing_phase_s": span, "measuring_s": measuring, "measuring_share": measuring / span if span else None,
            "prepare_s_sum": sum(s["prepare_s"] for s in sessions.values()),
            "prepare_s_max_session": max(s["prepare_s"] for s in sessions.values()),
            "session_process_s_max": max(process) if process else None,
            "session_host_wait_s_max": max(waits) if waits else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", help="the records' directory (results/cells)")
    parser.add_argument("--since", help="only sessions whose first round started at or after this UTC time "
                        "(ISO 8601, e.g. 2026-11-25T19:30:00), to leave out records of earlier runs")
    args = parser.parse_args()
    try:
        found = record_io.read_all(args.cells)
    except ValueError as error:
        raise SystemExit(f"timing_cost: {error}") from None
    for path, record in found:  # a record whose rounds this cannot read: named
        try:
            summary([record])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SystemExit(f"timing_cost: {path}: its timing cannot be read ({type(error).__name__}: {error})") from None
    result = summary([record for _, record in found], args.since)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
