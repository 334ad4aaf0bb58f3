"""An independent re-measurement of published cells, and how many land inside the published intervals.

Why: the report's intervals claim where a rerun lands, and the project's own reruns confirm it -- but they share
the pipeline's harness (interleaved rounds, shape sessions taking turns, the same timing code). Outside checks
re-measure with another harness, at another time: a fresh process per backend, cells one after another, one
window each, CUDA events around one call and one synchronisation per iteration. This is such a harness, kept
apart from infbench's engines and timing code on purpose (it imports none of them): what it shares with the
pipeline is only the definition of a cell -- the saved weights, the ONNX graphs, the inputs of the shape, and
what a call covers (the published ``options``: CUDA graphs, the ONNX graph, TF32 off for fp32, ONNX Runtime's
IO binding with inputs and output on the device).

    # on the GPU host, after the pipeline has made its artifacts (e.g. snakemake --omit-from bench):
    python3 tools/independent_check.py measure --published report/reference/h100 --results results \\
        --out recheck --passes 2
    # anywhere: how many of its medians lie inside the published intervals, by the published GPU busy class
    python3 tools/independent_check.py compare --published report/reference/h100 --measured recheck/measured.csv \\
        --out recheck

``measure`` re-measures every published ``ok`` cell whose engine it knows (PyTorch eager, with or without CUDA
graphs; torch.compile; ONNX Runtime's CUDA or CPU provider) and records any other as ``unavailable: <reason>``.
Each pass starts one process per (backend, precision) -- as a user's script would run alone on the GPU -- and
the passes run one after another, so that a pass is another time than the one before. On the H100, each
process's first small CUDA-graph replay ran at the GPU's fast level (the process before it had just worked on
the GPU) and the later ones at the slow level, in every pass: an outside harness meets both levels, which is
why the published intervals of those cells hold both (report/reference/h100/reproducibility/README.md).
``--order`` sets the order of the cells within each process (by shape, ascending by default; ``descending``, or
``shuffled`` anew per pass and process with ``--seed``), and each row records its ``order`` and ``position``:
which cell of a process meets which level is the harness's choice, and this lets a check vary it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEY = ["model", "backend", "engine", "precision", "batch", "seq_len"]
ENGINES = ("torch", "torch_compile", "onnxruntime")
CLASSES = ("gpu-bound", "mixed", "host-bound")


def published_cells(tables: Path, backends: list[str] | None = None):
    """The published ``ok`` cells (cells.csv) with their options, optionally only some backends."""
    import pandas as pd

    if not (Path(tables) / "cells.csv").is_file():
        raise SystemExit(f"--published: no cells.csv in {tables}")
    cells = pd.read_csv(Path(tables) / "cells.csv")
    cells = cells[cells["status"] == "ok"]
    if backends:
        unknown = sorted(set(backends) - set(cells["backend"]))
        if unknown:
            raise SystemExit(f"--backends: {', '.join(unknown)} not among the published ok cells")
        cells = cells[cells["backend"].isin(backends)]
    return cells


# --- one process: the cells of one (backend, precision) -----------------------------------------------------

def _torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _torch_model(model_dir: Path, precision: str, device: str):
    """The saved model in ``precision`` on ``device``, pooler removed: last_hidden_state is what a cell returns.
    Only what an encoder-only model's cell times (the manifest's ``benchmarked``: model) is re-measured here."""
    import torch
    from transformers import AutoModel

    part = json.loads((model_dir / "manifest.json").read_text()).get("benchmarked")
    if part != "model":
        raise LookupError(f"the benchmarked part {part!r} is not re-measured here (only encoder-only models)")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is fp32: the published cells time it without TF32
    torch.backends.cudnn.allow_tf32 = False
    model = AutoModel.from_pretrained(model_dir, dtype=_torch_dtype(precision))
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model.eval().to(device)


def _torch_runner(cell: dict, model, inputs: dict, device: str):
    """A no-argument call of the cell (torch, torch_compile)."""
    import torch

    tensors = {name: torch.as_tensor(array, device=device) for name, array in inputs.items()}
    options = cell["options"]
    if cell["engine"] == "torch_compile":
        torch._dynamo.reset()  # a fresh compile per shape: never the recompile limit of one module over shapes
        compiled = torch.compile(model, mode=options.get("mode", "default"), dynamic=bool(options.get("dynamic")))
        graphs = options.get("mode") in ("reduce-overhead", "max-autotune")

        def run():
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.inference_mode():
                return compiled(**tensors).last_hidden_state
        return run
    if options.get("cuda_graph"):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                model(**tensors)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            model(**tensors)
        return graph.replay

    def run():
        with torch.inference_mode():
            return model(**tensors).last_hidden_state
    return run


def _ort_runner(cell: dict, graph_dir: Path, inputs: dict, device: str):
    """ONNX Runtime on the published graph, IO binding with inputs and a pre-allocated output on the device."""
    import numpy as np
    import onnxruntime as ort

    options = cell["options"]
    if options.get("provider", "cuda") != "cuda":
        raise LookupError(f"provider {options['provider']} is not re-measured here")
    name = options.get("graph", "exported") + ("_fp16" if cell["precision"] == "fp16" else "")
    if device == "cuda":
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        providers = [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": "0",
                                                "enable_cuda_graph": "1" if options.get("cuda_graph") else "0"})]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(graph_dir / f"{name}.onnx"), providers=providers)
    binding = session.io_binding()
    sizes = {}
    keep = []
    for declared in session.get_inputs():
        array = np.ascontiguousarray(inputs[declared.name])
        sizes.update({dim: size for dim, size in zip(declared.shape, array.shape) if isinstance(dim, str)})
        value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
        keep.append(value)
        binding.bind_ortvalue_input(declared.name, value)
    output = session.get_outputs()[0]
    shape = [dim if isinstance(dim, int) else sizes[dim] for dim in output.shape]
    dtype = np.float16 if output.type == "tensor(float16)" else np.float32
    out = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, 0)
    binding.bind_ortvalue_output(output.name, out)

    def run():
        session.run_with_iobinding(binding)
    run.keep = (keep, out)  # the bound buffers live as long as the call
    return run


def _timer(device: str):
    """ms of one call: CUDA events around it and one synchronisation (GPU); the wall clock (CPU)."""
    if device != "cuda":
        def host(run):
            start = time.perf_counter()
            run()
            return (time.perf_counter() - start) * 1e3
        return host
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def events(run):
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    return events


def window(run, timer, warmup_s: float, window_s: float, min_iters: int = 20, max_iters: int = 5000) -> dict:
    """Warm up for ``warmup_s`` (at least 3 calls), then time calls for ``window_s`` (min/max iterations)."""
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < warmup_s:
        timer(run)
        calls += 1
    samples = []
    start = time.perf_counter()
    while len(samples) < min_iters or (time.perf_counter() - start < window_s and len(samples) < max_iters):
        samples.append(timer(run))
    ordered = sorted(samples)
    return {"median_ms": statistics.median(samples), "p10_ms": ordered[len(ordered) // 10],
            "p90_ms": ordered[(9 * len(ordered)) // 10], "n": len(samples)}


def measure_group(request: dict) -> list[dict]:
    """Every cell of ``request`` (one backend and precision), in this process, one window each."""
    import numpy as np

    results, device = Path(request["results"]), request["device"]
    timer = _timer(device)
    rows, models = [], {}
    for position, cell in enumerate(request["cells"]):
        row = {k: cell[k] for k in KEY} | {"pass": request["pass"], "order": request["order"], "position": position,
                                           "started_at": time.time()}
        try:
            if cell["engine"] not in ENGINES:
                raise LookupError(f"engine {cell['engine']} is not re-measured here")
            with np.load(results / "reference" / cell["model"] / f"b{cell['batch']}_s{cell['seq_len']}.npz") as npz:
                manifest = json.loads((results / "models" / cell["model"] / "manifest.json").read_text())
                inputs = {name: npz[name] for name in manifest["input_names"]}
            if cell["engine"] == "onnxruntime":
                run = _ort_runner(cell, results / "onnx" / cell["model"], inputs, device)
            else:
                if cell["model"] not in models:
                    models[cell["model"]] = _torch_model(results / "models" / cell["model"], cell["precision"], device)
                run = _torch_runner(cell, models[cell["model"]], inputs, device)
            row |= window(run, timer, request["warmup_s"], request["window_s"]) | {"status": "ok", "reason": ""}
        except LookupError as error:
            row |= {"status": "unavailable", "reason": str(error)}
        except Exception as error:  # noqa: BLE001 - one cell's failure is recorded, the others go on
            row |= {"status": "failed", "reason": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def measure(args) -> None:
    import pandas as pd

    cells = published_cells(args.published, args.backends.split(",") if args.backends else None)
    if not (Path(args.results) / "models").is_dir():
        raise SystemExit(f"--results: no models/ in {args.results} (the pipeline's results directory)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, rng = [], random.Random(args.seed)
    for index in range(args.passes):
        for (backend, precision), group in cells.groupby(["backend", "precision"], sort=False):
            group = group.sort_values(["batch", "seq_len"], ascending=args.order != "descending")
            if args.order == "shuffled":
                group = group.iloc[rng.sample(range(len(group)), len(group))]
            request = {"results": str(args.results), "device": args.device, "pass": index, "order": args.order,
                       "warmup_s": args.warmup_s, "window_s": args.window_s,
                       "cells": [{**{k: (int(v) if k in ("batch", "seq_len") else v) for k, v in r[KEY].items()},
                                  "options": json.loads(r["options"]) if isinstance(r["options"], str) else {}}
                                 for _, r in group.iterrows()]}
            done = subprocess.run([sys.executable, __file__, "_group"], input=json.dumps(request), text=True,
                                  capture_output=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 and len(lines) < len(request["cells"]):
                reason = f"process exited {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:300]}"
                measured = {(c["batch"], c["seq_len"]) for c in lines}
                lines += [{**{k: c[k] for k in KEY}, "pass": index, "order": args.order, "position": position,
                           "status": "failed", "reason": reason}
                          for position, c in enumerate(request["cells"]) if (c["batch"], c["seq_len"]) not in measured]
            rows += lines
            print(f"pass {index} {backend}/{precision}: {sum(r['status'] == 'ok' for r in lines)} of "
                  f"{len(lines)} ok", flush=True)
            pd.DataFrame(rows).to_csv(out / "measured.csv", index=False)


# --- against the published intervals -------------------------------------------------------------------------

def coverage(published, measured):
    """(per cell and pass: the published median and interval, the measured median, inside;
    per pass: inside counts and the median change |measured / published - 1|, by the published GPU busy class)."""
    import pandas as pd

    cols = [*KEY, "median_ms", "ci_lo_ms", "ci_hi_ms", "bound"]
    both = measured[measured["status"] == "ok"].merge(published[cols], on=KEY, suffixes=("", "_published"))
    both = both.assign(inside=(both["median_ms"] >= both["ci_lo_ms"]) & (both["median_ms"] <= both["ci_hi_ms"]),
                       ratio=both["median_ms"] / both["median_ms_published"])
    rows = []
    for index, part in both.groupby("pass"):
        row = {"pass": int(index), "all_inside": f"{int(part['inside'].sum())}/{len(part)}",
               "share_inside": round(float(part["inside"].mean()), 3)}
        for name in CLASSES:
            mine = part[part["bound"] == name]
            row[f"{name}_inside"] = f"{int(mine['inside'].sum())}/{len(mine)}"
            row[f"{name}_median_change"] = (round(float((mine["ratio"] - 1).abs().median()), 4)
                                            if len(mine) else None)
        rows.append(row)
    return both, pd.DataFrame(rows)


def compare(args) -> None:
    import pandas as pd

    published = published_cells(args.published)
    measured = pd.read_csv(args.measured)
    missing = sorted(set(KEY + ["pass", "status", "median_ms"]) - set(measured.columns))
    if missing:
        raise SystemExit(f"--measured: {args.measured} lacks {', '.join(missing)}")
    cells, summary = coverage(published, measured)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out / "cells.csv", index=False)
    summary.to_csv(out / "coverage.csv", index=False)
    print(summary.to_string(index=False))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="re-measure the published cells (GPU host, the pipeline's artifacts)")
    m.add_argument("--published", required=True, type=Path, help="the published tables (cells.csv)")
    m.add_argument("--results", required=True, type=Path, help="the pipeline's results/ (models, onnx, reference)")
    m.add_argument("--out", required=True)
    m.add_argument("--backends", help="comma-separated published backends (default: all)")
    m.add_argument("--passes", type=int, default=2)
    m.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    m.add_argument("--warmup-s", type=float, default=0.5)
    m.add_argument("--window-s", type=float, default=1.0)
    m.add_argument("--order", default="ascending", choices=("ascending", "descending", "shuffled"),
                   help="the cells' order within each process, by (batch, seq_len)")
    m.add_argument("--seed", type=int, default=0, help="for --order shuffled")
    c = sub.add_parser("compare", help="how many measured medians lie inside the published intervals")
    c.add_argument("--published", required=True, type=Path)
    c.add_argument("--measured", required=True, type=Path)
    c.add_argument("--out", required=True)
    sub.add_parser("_group", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "_group":
        measure_group(json.loads(sys.stdin.read()))
    elif args.command == "measure":
        measure(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
