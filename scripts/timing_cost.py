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
from pathlib import Path


def summary(records: list[dict]) -> dict:
    windows, sessions = [], {}
    for record in records:
        timing = record.get("timing") or {}
        if record.get("status") != "ok" or not timing.get("rounds"):
            continue
        cost = record.get("cost") or {}
        session = sessions.setdefault(timing.get("session"), {"cells": 0, "prepare_s": 0.0,
                                                               "process_s": cost.get("process_s"),
                                                               "host_wait_s": cost.get("host_wait_s")})
        session["cells"] += 1
        session["prepare_s"] += float((record.get("prepare") or {}).get("seconds") or 0.0)
        for r in timing["rounds"]:
            if r.get("started_unix") is None:
                continue
            length = r["window"]["warmup_seconds"] + r["window"]["loop_seconds"]
            windows.append((r["started_unix"], r["started_unix"] + length))
    if not windows:
        return {"sessions": len(sessions), "cells": 0}
    span = max(end for _, end in windows) - min(start for start, _ in windows)
    measuring = sum(end - start for start, end in windows)
    process = [s["process_s"] for s in sessions.values() if s["process_s"] is not None]
    return {"sessions": len(sessions), "cells": sum(s["cells"] for s in sessions.values()), "windows": len(windows),
            "timing_phase_s": span, "measuring_s": measuring, "measuring_share": measuring / span if span else None,
            "prepare_s_sum": sum(s["prepare_s"] for s in sessions.values()),
            "prepare_s_max_session": max(s["prepare_s"] for s in sessions.values()),
            "session_process_s_max": max(process) if process else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", help="the records' directory (results/cells)")
    args = parser.parse_args()
    records = [json.loads(path.read_text()) for path in sorted(Path(args.cells).rglob("*.json"))]
    print(json.dumps(summary(records), indent=1))


if __name__ == "__main__":
    main()
