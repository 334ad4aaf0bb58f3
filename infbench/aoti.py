"""AOTInductor packages: inductor's compiled code, built ahead of the timing jobs, in parallel, once.

Why: compiling in the timing job makes every shape job pay it serially (an inductor cell job on the H100 took
22 s, 15.6 s of it compiling, while 15 of 16 cores idled), and even a warm inductor cache costs 6-12 s per
fresh process. An AOTInductor package (``torch._inductor.aoti_compile_and_package`` on a ``torch.export``
graph) is a shared library plus weights that a timing job loads in well under a second. It also settles
"did the compiled path run": a package has no eager fallback and cannot recompile.

How: the workflow's ``compile_aoti`` job of a model compiles every package its matrix needs — one per shape,
or one per backend and precision with ``dynamic: true`` (one graph for every shape of the backend's grid) —
in parallel worker processes, and writes an index. Each package is named by a key of everything it depends
on (the model's config entry, backend options, precision, shape or range, torch version): a package already
built under its key is reused, so adding a shape compiles only that shape. max-autotune packages benchmark
kernels on the device while compiling, so they are built one at a time after the others, never beside
another build of the job (and every build's kernel benchmarks take the host's autotune lock); the job holds
the host lock shared (infbench/devices.py), so nothing is timed meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from infbench import artifacts, records

MODES = ("default", "max-autotune")


def torch_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def package_spec(model_entry: dict, backend: str, options: dict, precision: str, shape=None, grid=None) -> dict:
    """What one package is compiled from; ``key`` names it. Static: ``shape`` (batch, seq_len); dynamic:
    ``grid`` (the backend's batch sizes and seq_lens, whose extremes bound the graph's dynamic dims)."""
    dynamic = bool(options.get("dynamic"))
    spec = {"backend": backend, "precision": precision, "mode": options.get("mode", "default"), "dynamic": dynamic,
            "shape": None if dynamic else [int(shape[0]), int(shape[1])],
            "range": {"batch": [min(grid[0]), max(grid[0])], "seq_len": [min(grid[1]), max(grid[1])]} if dynamic else None}
    identity = {**spec, "backend": None, "model": model_entry, "torch": torch_version()}
    spec["key"] = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    spec["profile"] = "dynamic" if dynamic else f"b{shape[0]}_s{shape[1]}"
    return spec


def package_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / f"{key}.pt2"


def read_sidecar(package: Path) -> dict:
    sidecar = Path(package).with_suffix(".json")
    if not sidecar.exists():
        return {"status": "failed", "reason": f"no sidecar for {package}: the compile job did not run"}
    return json.loads(sidecar.read_text())


def compile_all(model_dir: Path, specs: list[dict], out_dir: Path, device: str, workers: int) -> dict:
    """Build every package not already built under its key; the index {key: sidecar}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, index = [], {}
    for spec in {s["key"]: s for s in specs}.values():
        info = read_sidecar(package_path(out_dir, spec["key"]))
        if info.get("status") == "ok" and package_path(out_dir, spec["key"]).exists():
            index[spec["key"]] = {**info, "reused": True}
        else:
            todo.append(spec)
    parallel = [s for s in todo if s["mode"] != "max-autotune"]
    serial = [s for s in todo if s["mode"] == "max-autotune"]  # they time kernels on the device: alone
    for batch, width in ((parallel, max(1, min(workers, len(parallel)))), (serial, 1)):
        if batch:
            index.update(_pool(model_dir, batch, out_dir, device, width))
    return index


def _pool(model_dir: Path, specs: list[dict], out_dir: Path, device: str, workers: int) -> dict:
    """Compile ``specs`` in ``workers`` spawned processes (they initialise CUDA themselves: never fork it);
    a worker that dies (a crash in the compiler) fails its package, with the reason, not the job."""
    index = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {spec["key"]: pool.submit(compile_one, model_dir, spec, out_dir, device) for spec in specs}
        for spec in specs:
            try:
                index[spec["key"]] = futures[spec["key"]].result()
            except Exception as error:  # noqa: BLE001 - BrokenProcessPool and the like
                info = {"spec": spec, "device": device, "status": "failed", "compile_seconds": None,
                        "reason": f"compile process died: {type(error).__name__}: {records.one_line(str(error))}"}
                package_path(out_dir, spec["key"]).with_suffix(".json").write_text(json.dumps(info, indent=1))
                index[spec["key"]] = info
    return index


def compile_one(model_dir: Path, spec: dict, out_dir: Path, device: str) -> dict:
    """Export, compile and package one graph; its sidecar (status ok, or failed with the reason)."""
    out = package_path(out_dir, spec["key"])
    info = {"spec": spec, "device": device, "torch": torch_version()}
    start = time.perf_counter()
    try:
        import torch
        from torch.export import Dim

        from infbench import models

        manifest = artifacts.read_manifest(Path(model_dir))
        module = models.load_module(Path(model_dir), spec["precision"], device)
        batch, seq_len = spec["shape"] or [max(2, spec["range"]["batch"][0]), max(8, spec["range"]["seq_len"][0])]
        example = tuple(torch.from_numpy(a).to(device) for a in artifacts.make_inputs(manifest, batch, seq_len, 0).values())
        dynamic = None
        if spec["dynamic"]:
            # min 1 / 2: export specialises sizes 0 and 1 unless told a dim may take them
            dims = {0: Dim("batch", min=1, max=max(2, spec["range"]["batch"][1])),
                    1: Dim("seq_len", min=2, max=max(8, spec["range"]["seq_len"][1]))}
            dynamic = (tuple(dims for _ in example),)
        with torch.no_grad():
            program = torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)
        if device == "cuda":  # its kernel benchmarks one at a time on the host (beside sessions' compiles)
            from infbench.engines.torch_compile import serialize_autotuning

            serialize_autotuning()
        configs = {"max_autotune": True} if spec["mode"] == "max-autotune" else {}
        torch._inductor.aoti_compile_and_package(program, package_path=str(out), inductor_configs=configs)
        info.update(status="ok", reason=None, sha256=artifacts.file_sha256(out), package_bytes=out.stat().st_size)
    except Exception as error:  # noqa: BLE001 - a failed compile is data: its cells carry the reason
        out.unlink(missing_ok=True)
        info.update(status="failed", reason=f"{type(error).__name__}: {records.one_line(str(error))}")
    info["compile_seconds"] = time.perf_counter() - start
    out.with_suffix(".json").write_text(json.dumps(info, indent=1, sort_keys=True))
    return info
