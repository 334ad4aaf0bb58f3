"""AOTInductor: inductor's compiled code loaded from a package built ahead by the workflow (infbench.aoti).

The timing job only loads the package (a shared library and its weights), so a shape session pays no
compile, and the number is the compiled code's by construction: a package has no eager fallback and cannot
recompile. ``mode`` is inductor's (default or max-autotune), ``dynamic: true`` one package for every shape of
the backend's grid, ``cuda_graph: true`` captures the package's call in a CUDA graph and replays it (what
torch.compile's reduce-overhead does for its compiled code), checked against an uncaptured call first.
"""

from __future__ import annotations

import contextlib
import platform
import time
import unittest.mock
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


@contextlib.contextmanager
def no_isa_probe(device: str):
    """Load a CUDA package without probing the host's CPU vector ISAs.

    Loading compares the CPU ISA recorded in the package with this host's, for an advisory warning only.
    Finding the host's ISAs dry-compiles probe programs and loads each one in a fresh interpreter, once per
    process (pytorch/pytorch#191715); an interpreter that imports torch costs 8-16 s on the H100 host.
    ``cpp.vec_isa_ok`` skips the plain AVX probes but not AMX's and AVX512-VNNI's, whose ``__bool__`` builds
    probes of its own. On that host, which has AMX, ``valid_vec_isa_list()`` still took 22 s with ``vec_isa_ok`` set
    (probes built and loaded), and each shape session's first package load took 25-64 s.

    A CUDA package runs no CPU kernel, so on CUDA the ISAs are taken from the flags the CPU reports, with no
    program built or loaded (measured on the H100, 2026-11-26: every session's load 1.1-1.4 s). A CPU package
    keeps the probe: its kernels are vectorised code."""
    if device != "cuda":
        yield
        return
    import torch._inductor.config
    from torch._inductor import cpu_vec_isa

    def reported() -> list:
        flags = cpu_vec_isa.x86_isa_checker() if platform.machine() in ("x86_64", "AMD64") else []
        return [isa for isa in cpu_vec_isa.supported_vec_isa_list if all(f in flags for f in str(isa).split())]

    with torch._inductor.config.patch({"cpp.vec_isa_ok": True}), \
            unittest.mock.patch.object(cpu_vec_isa, "valid_vec_isa_list", reported):
        yield


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
    with no_isa_probe(context.device):
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
