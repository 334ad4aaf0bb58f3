"""What a generation job holds while it runs, estimated from the model's spec before anything is built, so that
the workflow schedules jobs within the device's memory and the disk (``gpu_mem_gb`` and ``disk_gb``
resources, rules/generate*.smk).

- A shape session holds, at its peak, the fp32 reference model (built first, freed before the timed models) or
  the timed models: one per precision, shared by that precision's PyTorch backends, plus one more copy of the
  weights for every ``ort_genai`` backend (an og.Model each) and one per exported graph (its session shared by
  the ``ort_decoder`` backends), then every backend's KV cache and a margin per backend for its buffers,
  graphs and workspaces.
- An ONNX Runtime build holds the fp32 model on the device while it draws its weights, and on the disk: the
  saved model and the builder's output (``ort_genai``), or the fp32 export (``ort_decoder``: with its fused
  copy at fp32; fused and converted in memory at fp16 / bf16, the typed graph written once the export is gone).
"""

from __future__ import annotations

import math

from infbench.workloads.generate.model import BYTES, config_of, kv_bytes

GB = 1e9
PER_BACKEND_GB = 1.0  # a backend's graphs, workspaces, logits and allocator slack: an allowance, not yet measured
CONTEXT_GB = 1.0  # the process's CUDA context and libraries


def parameter_count(spec: dict) -> int:
    """The model's parameters (tied weights once), counted on the meta device: nothing is allocated. Cached
    per spec and library version (the workflow asks while it parses)."""
    from infbench.config import _cached_as

    def count() -> dict:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        from infbench.workloads.generate.model import is_seq2seq

        config = config_of(spec)
        auto = AutoModelForSeq2SeqLM if is_seq2seq(config) else AutoModelForCausalLM
        with torch.device("meta"):
            model = auto.from_config(config)
        return {"parameters": int(sum(p.numel() for p in model.parameters()))}

    what = {"what": "generation parameters", "model_type": spec["model_type"], "overrides": spec.get("overrides") or {}}
    return int(_cached_as(what, ("transformers", "torch"), count)["parameters"])


def session_gb(spec: dict, cells: list[tuple[str, str]], batch: int, prompt_len: int, new_tokens: int) -> int:
    """A shape session's peak device memory in GB (rounded up), for its cells' (engine or build, precision): an
    exported decoder's cells name their build (ort_build.build_name, one graph per attention)."""
    params = parameter_count(spec)
    config = config_of(spec)
    copies: dict[str, int] = {}
    for i, (engine, precision) in enumerate(cells):
        copies.setdefault(precision, 1)
        # an og.Model per ort_genai cell; one session per exported graph, shared by its ort_decoder cells
        copies[precision] += engine == "ort_genai" or (engine.startswith("ort_decoder") and (engine, precision) not in cells[:i])
    weights = sum(params * BYTES[p] * n for p, n in copies.items())
    caches = sum(kv_bytes(config, p, batch, prompt_len + new_tokens) for _, p in cells)
    peak = max(params * BYTES["fp32"], weights) + caches
    return math.ceil(peak / GB + CONTEXT_GB + PER_BACKEND_GB * len(cells))


def build_gb(spec: dict, engine: str, precision: str) -> dict[str, int]:
    """An ONNX Runtime build's device memory and peak disk in GB (rounded up)."""
    params = parameter_count(spec)
    if engine == "ort_genai":  # the model saved at the precision, then the builder's graph beside it
        disk = 2 * params * BYTES[precision]
    elif precision == "fp32":  # the fp32 export and its fused copy
        disk = 2 * params * BYTES["fp32"]
    else:  # the fp32 export (fused and converted in memory once it is read, then removed)
        disk = params * BYTES["fp32"]
    return {"gpu_mem_gb": math.ceil(params * BYTES["fp32"] / GB + CONTEXT_GB), "disk_gb": math.ceil(disk / GB + 1)}
