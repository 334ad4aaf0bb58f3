"""Which of a shape session's own windows puts a small CUDA-graph replay back on its slow level?

In the pipeline, the first windows of a session's round (right after another session's round: another
process's GPU work) replay at the fast level, later windows mostly at the slow one; standalone, nothing a
process does with torch alone, ORT on a small graph, allocations, streams, captures or NVML brings it back
(cuda_graph_levels_triggers.py). So this takes the pipeline's own prepared cells: it is called with
scripts.bench_shape's arguments (the shape request Snakemake passes), prepares every cell as the session does
(infbench.cell.run_shape), and replaces the rounds by: for each cell E, three times: another process's GEMMs
(0.3 s: the fast level), a probe window of ``eager-cuda-graph/fp16``, E's own window (infbench's measure, the
pipeline's policy; "(nothing)": 0.4 s idle), then two probe windows. Writes bisect.json to $OUT and prints a
table.

MODE=order tests what the published rounds show (infbench.measure.order: after the session's ort-cuda window the
replays are slow, one window later): first three probe windows before any other process ran (the lone process's
level), then for each candidate (SWITCHES, comma-separated; "copy" is a loop of small device-to-host and
host-to-device copies, as ORT's shape tensors make; "eager/fp16" a control that the published rounds do not name;
"(idle N s)" is N seconds idle, "(nothing)" 0.4 s), REPS times: 3 s of another process's GEMMs (as another
session's round), a probe window, the candidate's window, then AFTER probe windows (default 4). Writes order.json
and prints, per candidate, the probe after k windows over the probe before."""
import argparse, contextlib, json, multiprocessing as mp, os, statistics, sys, time
from pathlib import Path

OUT = os.environ.get("OUT", "/tmp")
PROBE = "eager-cuda-graph/fp16"


def gemm_server(conn):
    """Another process that stays alive and runs ``bert_graph.gemms`` for each number of seconds it is sent."""
    from bert_graph import gemms
    while True:
        seconds = conn.recv()
        if seconds is None:
            return
        gemms(seconds)
        conn.send("done")


@contextlib.contextmanager
def gemm_bursts():
    """A ``gemm_server`` process for the experiment's length; yields ``burst(seconds)``, which returns when that
    process has run its GEMMs for that long."""
    parent, child = mp.get_context("spawn").Pipe()
    server = mp.get_context("spawn").Process(target=gemm_server, args=(child,), daemon=True)
    server.start()

    def burst(seconds):
        parent.send(seconds)
        parent.recv()

    try:
        yield burst
    finally:
        parent.send(None)
        server.join(5)


def window_median(policy, clock):
    """``window(run)``: the median of one window of ``run`` with the pipeline's policy and clock (ms, 4 places)."""
    from infbench.measure.timing import measure
    return lambda run: round(measure(run, policy, clock)["median_ms"], 4)


def experiment(runners, policy, clock, seed, **_):
    window = window_median(policy, clock)
    with gemm_bursts() as burst:
        start = [window(runners[PROBE]) for _ in range(3)]
        print("start (no other process yet)", start, flush=True)
        burst(3)
        rows = order_trials(runners, window, burst, int(os.environ.get("REPS", 3)),
                            ["(nothing)", *[n for n in runners if n != PROBE], PROBE], after=2, burst_s=0.3)
    Path(OUT, "bisect.json").write_text(json.dumps({"start": start, "cells": rows}, indent=1))
    print("summary: probe after / before (median over reps)")
    for name, ratios in order_summary(rows).items():
        print(f"  {name:32s} {ratios[0]:.3f}  {ratios[1]:.3f}", flush=True)
    raise SystemExit(0)


def order_trials(runners, window, burst, reps: int, candidates, after: int, idle=time.sleep,
                 burst_s: float = 3.0):
    """The sequence of both experiments (module docstring), with ``window(run)`` a window's median and
    ``burst(s)`` another process's GEMMs (``burst_s`` before each trial): rows {rep, candidate, before, own,
    after: [probe medians]}, printed as they come."""
    rows = []
    for rep in range(reps):
        for name in candidates:
            burst(burst_s)
            before = window(runners[PROBE])
            if name.startswith("("):
                idle(idle_seconds(name))
                own = None
            else:
                own = window(runners[name])
            rows.append({"rep": rep, "candidate": name, "before": before, "own": own,
                         "after": [window(runners[PROBE]) for _ in range(after)]})
            print(f"{rep} {name:32s} probe before {before:.4f}  own {own}  after {rows[-1]['after']}", flush=True)
    return rows


def idle_seconds(name: str) -> float:
    """"(idle 5 s)" -> 5.0; "(nothing)" -> 0.4 (a window's length, idle)."""
    words = name.strip("()").split()
    return float(words[1]) if words[0] == "idle" else 0.4


def order_summary(rows) -> dict:
    """Per candidate: the median over reps of (probe k windows after) / (probe before), k = 1, 2, ..."""
    out = {}
    for name in dict.fromkeys(r["candidate"] for r in rows):
        mine = [r for r in rows if r["candidate"] == name]
        out[name] = [round(statistics.median(r["after"][k] / r["before"] for r in mine), 3)
                     for k in range(len(mine[0]["after"]))]
    return out


def order_experiment(runners, policy, clock, seed, **_):
    import torch
    small = torch.arange(8, device="cuda")
    runners = {**runners, "copy": lambda: torch.as_tensor(small.cpu().numpy() + 1).cuda()}
    candidates = [c for c in os.environ.get(
        "SWITCHES", "ort-cuda/fp16,ort-cuda/fp32,ort-cuda-graph/fp16,eager/fp16,copy,(nothing),(idle 5 s)").split(",")
        if c]
    window = window_median(policy, clock)
    lone = [window(runners[PROBE]) for _ in range(3)]
    print("lone process (no other process's GPU work yet):", lone, flush=True)
    with gemm_bursts() as burst:
        rows = order_trials(runners, window, burst, int(os.environ.get("REPS", 3)), candidates,
                            int(os.environ.get("AFTER", 4)))
    Path(OUT, "order.json").write_text(json.dumps({"lone": lone, "trials": rows}, indent=1))
    for name, ratios in order_summary(rows).items():
        print(f"  {name:24s} probe after 1..{len(ratios)} windows / before: {ratios}", flush=True)
    raise SystemExit(0)


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    from infbench import cell
    parser = argparse.ArgumentParser()
    for flag in ("--shape", "--manifest", "--reference", "--log", "--out"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--timeout", type=int)
    args = parser.parse_args()
    request = {**json.loads(args.shape), "manifest": args.manifest, "reference": args.reference,
               "threads": args.threads, "log": args.log}
    # AOTInductor's package load segfaults outside the pipeline's session process (seen on the H100): left out
    specs = [cell.spec_from_request(request, c) for c in request["cells"] if c["key"]["engine"] != "aot_inductor"]
    # the session prepares as in the pipeline; the rounds are this experiment
    cell.run_rounds = order_experiment if os.environ.get("MODE") == "order" else experiment
    cell.run_shape(specs)
