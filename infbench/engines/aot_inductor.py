"""AOTInductor: inductor's compiled code loaded from a package built ahead by the workflow (infbench.aoti).

The timing job only loads the package (a shared library and its weights), so a shape session pays no
compile, and the number is the compiled code's by construction: a package has no eager fallback and cannot
recompile. ``mode`` is inductor's (default or max-autotune), ``dynamic: true`` one package for every shape of
the backend's grid, ``cuda_graph: true`` captures the package's call in a CUDA graph and replays it (what
torch.compile's reduce-overhead does for its compiled code), checked against an uncaptured call first.
"""

from __future__ import annotations

import time
from pathlib import Path

from infbench import aoti, artifacts
from infbench.engines import torch_eager
from infbench.engines.base import CellContext, CellUnusable, Runner

supports = torch_eager.supports
graph = torch_eager.graph
COMPILED_AHEAD = True  # the workflow gives its cells a package (CellContext.engine_path) from rule compile_aoti


def available(device: str, options: dict) -> str | None:
    if options.get("cuda_graph") and device != "cuda":
        return "cuda_graph needs a CUDA device"
    return torch_eager.torch_available(device)


def prepare(context: CellContext) -> Runner:
    import torch

    package = Path(context.engine_path)
    info = aoti.read_sidecar(package)
    if info.get("status") != "ok":
        raise CellUnusable(info.get("status") or "failed", f"AOTInductor compile {info.get('status')}: {info.get('reason')}")
    if not package.exists() or artifacts.file_sha256(package) != info.get("sha256"):
        raise CellUnusable("failed", f"{package} does not match its sidecar's sha256: not timed")
    torch_eager.set_math(context)
    start = time.perf_counter()
    loaded = torch._inductor.aoti_load_package(str(package))
    load_seconds = time.perf_counter() - start
    prepared = {"seconds": load_seconds, "load_seconds": load_seconds, "what": "load AOTInductor package",
                "compile_seconds_ahead": info.get("compile_seconds"), "package": package.name,
                "package_sha256": info.get("sha256"), "package_bytes": info.get("package_bytes"),
                "mode": info["spec"]["mode"], "dynamic": info["spec"]["dynamic"], "fallback": False,
                "recompiles": 0, "compiled": "AOTInductor package (no eager fallback, no recompilation)"}
    if context.options.get("cuda_graph"):
        return torch_eager.CudaGraphRunner(loaded, context, prepared)
    return torch_eager.TorchRunner(loaded, context, prepared)
