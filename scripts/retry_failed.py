"""Retry failed cells and the failed steps upstream of them, with Snakemake's own --forcerun.

    python3 -m scripts.retry_failed [--list] [--environmental] [--results results] [-- snakemake arguments]

A failure is recorded as data (the run still ends with a report), so a plain rerun says "Nothing to be
done". This finds what failed and forces exactly that, and everything downstream of it, to run again:
- every cell whose record says ``failed`` (with --environmental: only those whose failure was the machine's,
  ``retry: true`` -- disk full, out of memory, killed -- not the cell's own answer): its shape job;
- the steps upstream of those cells that failed (``status: failed`` in their sidecar: the model build, the
  shape's reference, the model's ONNX graphs, the backend's TensorRT engines, the model's AOTInductor
  packages) or whose output is missing or no longer matches its sidecar (a deleted or corrupt ONNX graph);
- the device peaks, where they failed.
Then it runs ``snakemake <snakemake arguments> --forcerun <those files>``. With --list it only prints them,
one per line with why. See docs/troubleshooting.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from infbench import records


def _sidecar(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _failed(info: dict | None, environmental: bool) -> str | None:
    """The reason of a failed step's sidecar (only a machine's failure with ``environmental``), or None."""
    if not info or info.get("status") != "failed":
        return None
    reason = str(info.get("reason") or "failed")
    return reason if not environmental or records.environmental(reason) else None


def _graph_problem(graph: Path, info: dict | None) -> str | None:
    """Why an ONNX graph whose step succeeded must be built again: missing, or not what its sidecar says."""
    from infbench import artifacts

    if info is None or info.get("status", "ok") != "ok":
        return None
    if not graph.exists():
        return "the graph file is missing"
    if info.get("sha256") and artifacts.file_sha256(graph) != info["sha256"]:
        return "the graph does not match its sidecar's sha256 (corrupt)"
    return None


def targets(results: Path, environmental: bool = False) -> dict[str, str]:
    """{file to force: why}: failed cells' shape bundles and their failed (or corrupt, missing) upstream
    steps' outputs. Raises ValueError naming a record that cannot be read."""
    found = records.read_all(results / "cells") if (results / "cells").is_dir() else []
    force: dict[str, str] = {}
    models: set[str] = set()
    for path, record in found:
        if record["status"] != "failed" or (environmental and not record.get("retry")):
            continue
        key = record["key"]
        shape = results / "shapes" / key["model"] / f"{records.shape_stem(key)}.json"
        force.setdefault(str(shape), f"{path}: {record.get('reason')}")
        if key.get("workload") == "generate":
            continue  # its model is built inside its session: no upstream step
        models.add(key["model"])
        reference = results / "reference" / key["model"] / f"b{key['batch']}_s{key['seq_len']}.json"
        if reason := _failed(_sidecar(reference), environmental):
            force[str(reference)] = reason
        for engine_info in (results / "engines" / key["model"] / key["backend"] / key["precision"]).glob("*.json"):
            if reason := _failed(_sidecar(engine_info), environmental):
                force[str(engine_info.with_suffix(".plan"))] = reason
    for model in sorted(models):
        manifest = results / "models" / model / "manifest.json"
        if reason := _failed(_sidecar(manifest), environmental):
            force[str(manifest)] = reason
        for info_path in sorted((results / "onnx" / model).glob("*.json")):
            info = _sidecar(info_path)
            graph = info_path.with_suffix(".onnx")
            if reason := _failed(info, environmental) or (None if environmental else _graph_problem(graph, info)):
                force[str(graph)] = reason
        index = results / "compiled" / model / "index.json"
        entries = (_sidecar(index) or {}).values()
        reason = next((r for entry in entries if isinstance(entry, dict) and (r := _failed(entry, environmental))), None)
        if reason:
            force[str(index)] = reason
    peaks = results / "device" / "peaks.json"
    if reason := _failed(_sidecar(peaks), environmental):
        force[str(peaks)] = reason
    return force


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="the results directory (default: results)")
    parser.add_argument("--list", action="store_true", help="only print what would be run again, and why")
    parser.add_argument("--environmental", action="store_true",
                        help="only failures of the machine (disk full, out of memory, killed): records with retry: true")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    results = Path(args.results)
    if not results.is_dir():
        raise SystemExit(f"retry_failed: {results}: no such directory (run it where the workflow ran, or pass "
                         "--results)")
    try:
        force = targets(results, args.environmental)
    except ValueError as error:
        raise SystemExit(f"retry_failed: {error}") from None
    if not force:
        print("retry_failed: nothing failed" + (" for reasons of the machine" if args.environmental else ""))
        return
    for path, why in force.items():
        print(f"{path}: {why}")
    if args.list:
        return
    extra = [a for a in args.snakemake_args if a != "--"]
    sys.exit(subprocess.call(["snakemake", *extra, "--forcerun", *force]))


if __name__ == "__main__":
    main()
