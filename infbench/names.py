"""What a reader calls a backend: display names derived from the engine and its options, and engine families.

Config names (``inductor-cudagraphs``) are keys for files and wildcards; a reader needs "torch.compile
reduce-overhead". The name is derived from what runs (engine + options), so two configs that run the same
thing read the same, and a config entry's ``label`` overrides it. Families (PyTorch, ONNX Runtime, TensorRT)
group backends in figures and in the answer: they are what a user chooses between first.
"""

from __future__ import annotations

import json

import pandas as pd

FAMILIES = ("PyTorch", "ONNX Runtime", "TensorRT", "other")
# Okabe & Ito's colour-blind-safe palette: one hue per family, shades within it come from markers and dashes
FAMILY_COLOURS = {"PyTorch": "#D55E00", "ONNX Runtime": "#0072B2", "TensorRT": "#009E73", "other": "#7F7F7F"}


def family(engine: str, options: dict | None = None) -> str:
    options = options or {}
    if engine in ("tensorrt", "torch_tensorrt") or (engine == "onnxruntime" and options.get("provider") == "tensorrt"):
        return "TensorRT"
    if engine in ("onnxruntime", "ort_genai", "ort_decoder"):
        return "ONNX Runtime"
    if engine in ("torch", "torch_compile", "aot_inductor", "hf_generate", "static_loop"):
        return "PyTorch"
    if engine == "tensorrt_llm":
        return "TensorRT"
    return "other"


def _compile_mode(options: dict) -> str:
    mode = options.get("mode") or "default"
    return "" if mode == "default" else f" {mode}"


def display_name(engine: str, options: dict | None = None, label: str | None = None) -> str:
    """"torch.compile reduce-overhead", "ONNX Runtime fused + CUDA graphs", …; ``label`` wins when given."""
    if label:
        return label
    options = options or {}
    graphs = " + CUDA graphs" if options.get("cuda_graph") else ""
    dynamic = " dynamic" if options.get("dynamic") else ""
    if engine == "torch":
        return "PyTorch eager" + (" autocast" if options.get("autocast") else "") + graphs
    if engine == "torch_compile":
        return "torch.compile" + _compile_mode(options) + dynamic
    if engine == "aot_inductor":
        return "AOTInductor" + _compile_mode(options) + dynamic
    if engine == "onnxruntime":
        if options.get("provider") == "tensorrt":
            return "ONNX Runtime TensorRT EP"
        fused = " fused" if options.get("graph") == "optimized" else ""
        return "ONNX Runtime" + fused + graphs
    if engine == "tensorrt":
        return ("TensorRT-RTX" if options.get("library") == "tensorrt_rtx" else "TensorRT") + graphs
    if engine == "torch_tensorrt":
        return "Torch-TensorRT"
    if engine == "hf_generate":  # the generation workload's engines
        return "transformers generate" + (", static cache" if options.get("cache") == "static" else "")
    if engine == "static_loop":
        compiled = "compiled" + (" (coordinate descent)" if options.get("coordinate_descent") else "") + _compile_mode(options)
        parts = [p for p, on in ((compiled, options.get("compile")), ("CUDA graphs", options.get("cuda_graph"))) if on]
        return "static-cache loop" + (f", {' + '.join(parts)}" if parts else ", eager")
    if engine == "tensorrt_llm":
        return "TensorRT-LLM"
    if engine == "ort_genai":
        return "onnxruntime-genai" + graphs
    if engine == "ort_decoder":
        attention = ", SDPA as exported" if options.get("attention") == "sdpa" else ""
        return "ONNX Runtime exported decoder" + attention + graphs
    return engine


def _options(value) -> dict:
    if isinstance(value, dict):
        return value
    try:
        return json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        return {}


def catalogue(cells: pd.DataFrame, labels: dict[str, str | None] | None = None) -> pd.DataFrame:
    """One row per backend of the tables: backend, engine, display name and family (cells.csv has the engine
    and the options of every backend, whatever its status)."""
    labels = labels or {}
    columns = ["backend", "engine", "display", "family"]
    if cells.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for row in cells.drop_duplicates("backend").itertuples(index=False):
        options = _options(getattr(row, "options", None))
        rows.append({"backend": row.backend, "engine": row.engine,
                     "display": display_name(row.engine, options, labels.get(row.backend)),
                     "family": family(row.engine, options)})
    return pd.DataFrame(rows, columns=columns)


def with_names(frame: pd.DataFrame, catalogue_frame: pd.DataFrame, column: str = "backend",
               prefix: str = "") -> pd.DataFrame:
    """``frame`` with ``{prefix}display`` and ``{prefix}family`` for the backend named in ``column`` (the
    config name when the catalogue does not know it)."""
    names = catalogue_frame.set_index("backend")
    out = frame.copy()
    out[f"{prefix}display"] = out[column].map(names["display"]).fillna(out[column])
    out[f"{prefix}family"] = out[column].map(names["family"]).fillna("other")
    return out


def labels_of(config: dict, section: str = "forward") -> dict[str, str | None]:
    """The config's display-name overrides, backend → label, of the forward backends or the generation ones."""
    entries = (config.get("generation") or {}).get("backends") if section == "generation" else config.get("backends")
    return {name: entry.get("label") for name, entry in (entries or {}).items()}
