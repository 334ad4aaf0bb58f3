"""Which of a shape session's own windows puts a small CUDA-graph replay back on its slow level?

In the pipeline, the first windows of a session's round (right after another session's round: another
process's GPU work) replay at the fast level, later windows mostly at the slow one; standalone, nothing a
process does with torch alone, ORT on a small graph, allocations, streams, captures or NVML brings it back
(cuda_graph_levels_triggers.py). So this takes the pipeline's own prepared cells: it is called with
scripts.bench_shape's arguments (the shape request Snakemake passes), prepares every cell as the session does
(infbench.cell.run_shape), and replaces the rounds by: for each cell E, three times: another process's GEMMs
(0.3 s: the fast level), a probe window of ``eager-cuda-graph/fp16``, E's own window (infbench's measure, the
pipeline's policy), then two probe windows. Writes bisect.json to $OUT and prints a table."""
import argparse, json, multiprocessing as mp, os, statistics, sys, time
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


def experiment(runners, policy, clock, seed, **_):
    from infbench.measure.timing import measure
    parent, child = mp.get_context("spawn").Pipe()
    server = mp.get_context("spawn").Process(target=gemm_server, args=(child,), daemon=True)
    server.start()

    def burst(seconds=0.3):
        parent.send(seconds)
        parent.recv()

    def probe():
        return round(measure(runners[PROBE], policy, clock)["median_ms"], 4)

    log = {"start": [probe() for _ in range(3)], "cells": []}
    print("start (no other process yet)", log["start"], flush=True)
    burst(3)
    for rep in range(int(os.environ.get("REPS", 3))):
        for name in ["(nothing: 0.4 s idle)", *[n for n in runners if n != PROBE], PROBE]:
            burst()
            before = probe()
            if name.startswith("("):
                time.sleep(0.4)
                own = None
            else:
                own = round(measure(runners[name], policy, clock)["median_ms"], 4)
            after = [probe(), probe()]
            log["cells"].append({"rep": rep, "cell": name, "before": before, "own_ms": own, "after": after})
            print(f"{rep} {name:32s} probe before {before:.4f}  own {own}  after {after}", flush=True)
    parent.send(None)
    server.join(5)
    Path(OUT, "bisect.json").write_text(json.dumps(log, indent=1))
    print("summary: probe after / before (median over reps)")
    for name in dict.fromkeys(c["cell"] for c in log["cells"]):
        rows = [c for c in log["cells"] if c["cell"] == name]
        print(f"  {name:32s} {statistics.median(c['after'][0] / c['before'] for c in rows):.3f}"
              f"  {statistics.median(c['after'][1] / c['before'] for c in rows):.3f}", flush=True)
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
    cell.run_rounds = experiment  # the session prepares as in the pipeline; the rounds are this experiment
    cell.run_shape(specs)
