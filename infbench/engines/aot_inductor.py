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


def _load_patches(device: str) -> dict:
    """Inductor settings for loading a package. Loading compares the CPU vector ISA recorded in the package
    with this host's, for an advisory warning only; finding the host's ISA dry-compiles probe programs and
    loads each in a fresh interpreter, once per process (pytorch/pytorch#191715). On the H100 host, where a
    fresh interpreter that imports torch costs ~16 s, the first package a process loaded took 50-114 s, and
    any later one 0.15 s -- our reading of the cause, to be confirmed there. A CUDA package runs no CPU
    kernel, so on CUDA the probe is skipped (``cpp.vec_isa_ok``: the ISAs the CPU reports are taken as they
    are)."""
    import torch._inductor.config

    if device == "cuda" and hasattr(torch._inductor.config.cpp, "vec_isa_ok"):
        return {"cpp.vec_isa_ok": True}
    return {}


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
    with torch._inductor.config.patch(_load_patches(context.device)):
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
