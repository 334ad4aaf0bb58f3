"""Preparation of the ONNX Runtime generation backends: one model directory per (model, engine, precision),
built by a rule of its own (rules/generate_ort.smk) and read by every shape session of that model.

- ``ort_genai``: the model saved with ``save_pretrained`` -- seeded weights built on the session's device (a
  GPU's random generator draws other numbers than the CPU's), its output layer scaled as the session's model
  is -- beside a ``tokenizers`` WordLevel tokenizer of its vocabulary (the builder copies one; generation feeds
  token ids, so its words never matter), converted by onnxruntime-genai's model builder for the device's
  provider at the precision;
- ``ort_decoder``: the same model exported by infbench with its KV cache as inputs and outputs, its attention
  emitted as GroupQueryAttention (``attention: gqa``, the default) or exported as transformers' SDPA
  (``attention: sdpa``), fused by the forward graphs' fusion step and converted to fp16 / bf16 where asked
  (infbench.workloads.generate.ort_export). One directory per attention: ``ort_decoder-gqa``, ``ort_decoder-sdpa``.

Each directory holds ``manifest.json``: status (a failed build is a manifest with its one-line reason, so the
cells record it and the DAG goes on), seconds, op counts and the fused ones (GroupQueryAttention,
MultiHeadAttention, RotaryEmbedding, SkipSimplifiedLayerNormalization, …), and what the build needed. Which
families an engine takes is decided up front from the model's spec (``family_support``): an unsupported one
gets no build and its cells say why.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path

from infbench.environment import ALTERNATIVES, package_version

ENGINES = ("ort_genai", "ort_decoder")
# the module and its distribution (environment.ALTERNATIVES names its GPU wheel, which imports first where both are
# installed, and environment.package_version reads the one that imports)
PACKAGES = {"ort_genai": ("onnxruntime_genai", "onnxruntime-genai"), "ort_decoder": ("onnxruntime", "onnxruntime")}
PROVIDERS = {"cpu": "cpu", "cuda": "cuda"}  # the builder's -e per device
log = logging.getLogger("infbench.generate.ort")


def attention(options: dict | None) -> str:
    """The exported decoder's attention (ort_export.ATTENTIONS, a build option) for a backend's options."""
    return (options or {}).get("attention", "gqa")


def build_name(engine: str, options: dict | None = None) -> str:
    """The name of an engine's build for a backend's options: ``ort_decoder-gqa`` / ``ort_decoder-sdpa`` (one
    per ``attention``), ``ort_genai``."""
    return f"{engine}-{attention(options)}" if engine == "ort_decoder" else engine


def artifact_path(engine: str, model: str, precision: str, options: dict | None = None) -> str:
    """Where a model's prepared directory lives: its manifest is the rule's output."""
    return f"results/generation/{model}/{build_name(engine, options)}/{precision}/manifest.json"


def library_version(engine: str) -> str | None:
    """The installed version of the engine's library (the wheel that imports), or None."""
    return package_version(PACKAGES[engine][1])


def importable(engine: str) -> bool:
    return importlib.util.find_spec(PACKAGES[engine][0]) is not None


def builder_architectures() -> set[str]:
    """The causal-LM classes onnxruntime-genai's model builder converts, read from the installed builder's
    dispatch (its source, not imported: the workflow asks this while it parses)."""
    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.origin:
        return set()
    source = Path(spec.origin).parent / "models" / "builder.py"
    if not source.is_file():
        return set()
    return set(re.findall(r'config\.architectures\[0\] == "(\w+)"', source.read_text()))


def supports(engine: str, precision: str, device: str, spec: dict | None = None, options: dict | None = None) -> str | None:
    """Static capability: fp32 only on the CPU provider, fp16 / bf16 only for GroupQueryAttention on CUDA, and
    the model's family (``family_support``)."""
    if device == "cpu" and precision != "fp32":
        return f"{precision} on ONNX Runtime's CPU provider: the ORT generation backends are built fp32 on the CPU"
    if build_name(engine, options) == "ort_decoder-gqa" and device == "cuda" and precision == "fp32":
        return ("fp32 GroupQueryAttention on CUDA: ONNX Runtime's CUDA kernel is fp16 / bf16 only (it would run on "
                "the CPU, the cache copied to the host every step); attention: sdpa exports fp32 for a GPU")
    return family_support(engine, spec) if spec else None


def needs_build(engine: str, spec: dict, precision: str, device: str, options: dict | None = None) -> bool:
    """Does a cell of ``engine`` (with the backend's ``options``) read a prepared directory? Not where it is
    unsupported or its library is missing: its record says so without one."""
    return engine in ENGINES and importable(engine) and supports(engine, precision, device, spec, options) is None


def family_support(engine: str, spec: dict) -> str | None:
    """Why ``engine`` cannot generate with the model of ``spec`` (one line), or None: decided from the spec,
    before anything is built."""
    from infbench.config import _cached_as

    found = _cached_as({"what": "ort generation family", "engine": engine, "model_type": spec["model_type"],
                        "overrides": spec.get("overrides") or {}},
                       ("transformers", *ALTERNATIVES[PACKAGES[engine][1]]),
                       lambda: {"reason": _family_reason(engine, spec)})
    return found["reason"]


def _family_reason(engine: str, spec: dict) -> str | None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from infbench.workloads.generate.model import config_of, is_seq2seq

    model_type, config = spec["model_type"], config_of(spec)
    if is_seq2seq(config):
        if engine == "ort_genai":
            return f"{model_type} is an encoder–decoder: onnxruntime-genai's model builder converts decoder-only LMs"
        return (f"{model_type} is an encoder–decoder: infbench's exported decoder is a decoder-only LM's (no "
                "encoder graph or cross-attention cache)")
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    experts = [key for key in MOE_KEYS if getattr(config, key, None)]
    if engine == "ort_decoder" and experts:
        return (f"{model_type} has mixture-of-experts layers ({experts[0]}): transformers' grouped expert matmul "
                "(transformers.grouped_mm_fallback) has no ONNX export")
    if engine == "ort_genai" and importable(engine) and architecture not in builder_architectures():
        return (f"onnxruntime-genai {library_version(engine)}'s model builder does not convert {architecture} "
                f"({model_type})")
    return None


# the config keys that count a mixture-of-experts model's experts (Mixtral, Qwen-MoE, DeepSeek)
MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def build_params(engine: str, spec: dict, precision: str, device: str, options: dict | None = None) -> dict:
    """Everything a prepared directory depends on: the model's spec, precision, device (its provider and its
    random weights), the libraries that build it and the exported decoder's attention. Not the prompt, batch or
    new tokens: one directory serves every shape."""
    libraries = {"torch": package_version("torch"), "transformers": package_version("transformers"),
                 "onnxruntime": library_version("ort_decoder"), engine: library_version(engine)}
    params = {"engine": engine, "spec": spec, "precision": precision, "device": device, "libraries": libraries}
    if engine == "ort_decoder":
        libraries["onnxscript"] = package_version("onnxscript")
        params["attention"] = attention(options)
    return params


def save_model(spec: dict, device: str, precision: str, out_dir: Path) -> dict:
    """The session's model at ``precision`` (same seed, same device, scaled output layer: the weights the
    session's own model holds, half the disk of fp32 for the builder to convert) saved with ``save_pretrained``
    beside a WordLevel tokenizer of its vocabulary; returns its build facts (the model itself is let go before
    the builder reads the files)."""
    from infbench.workloads.generate import model as decoder

    start = time.perf_counter()
    model, facts = decoder.build(spec, device, precision)
    # the builder refuses a model without an end-of-sequence id (Qwen3's config has none) or with one outside the
    # vocabulary (a family's default in a small one); generations run to their length (decoder.build), so any id
    # serves: 0, the tokenizer's unknown word
    model.config.eos_token_id = model.generation_config.eos_token_id = 0
    model.save_pretrained(out_dir)
    write_tokenizer(int(model.config.vocab_size), out_dir)
    return {**facts, "save_s": time.perf_counter() - start}


def write_tokenizer(vocab: int, out_dir: Path) -> None:
    """A WordLevel tokenizer whose word ``t{i}`` is id i, saved as transformers' fast tokenizer files; ``t0`` is
    its unknown, padding and end-of-sequence word (else the builder takes the family tokenizer's own end of
    sequence, outside a small vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="t0", pad_token="t0",
                            eos_token="t0").save_pretrained(out_dir)


def build_genai(params: dict, out_dir: Path) -> dict:
    """onnxruntime-genai's model builder on the saved model, in this process (its CLI's two calls:
    ``python -m onnxruntime_genai.models.builder -i DIR -o OUT -p PRECISION -e PROVIDER``)."""
    from onnxruntime_genai.models import builder

    precision, provider = params["precision"], PROVIDERS[params["device"]]
    # beside the output, on the disk whose room the build checked
    with tempfile.TemporaryDirectory(prefix="infbench-genai-", dir=out_dir.parent) as scratch:
        source, cache = Path(scratch) / "hf", Path(scratch) / "cache"
        facts = save_model(params["spec"], params["device"], precision, source)
        if params["device"] == "cuda":
            import torch

            torch.cuda.empty_cache()  # the model was let go: its memory back to the device before the builder runs
        start = time.perf_counter()
        # hf_token=false: offline, the builder would otherwise ask the hub for a token
        extra = builder.parse_extra_options(None, str(source), str(out_dir), precision, provider, str(cache),
                                            ["hf_token=false"])
        builder.create_model(None, str(source), str(out_dir), precision, provider, str(cache), **extra)
    config = json.loads((out_dir / "genai_config.json").read_text())
    return {"weights_s": facts["save_s"], "build_s": time.perf_counter() - start,
            "builder": f"onnxruntime_genai.models.builder -p {precision} -e {provider}",
            "graph": config["model"]["decoder"]["filename"],
            "past_present_share_buffer": config["search"].get("past_present_share_buffer"),
            "needed": ["the model saved with save_pretrained (scaled output layer included) and a WordLevel "
                       "tokenizer of its vocabulary written beside it (the builder copies one)",
                       "hf_token=false (offline: the builder otherwise asks the hub for a token)",
                       "end-of-sequence id 0 (the tokenizer's unknown word) in the saved config: the builder requires "
                       "one inside the vocabulary; generations run to their length whatever it is"]}


def build_decoder(params: dict, out_dir: Path) -> dict:
    """infbench's export of the decoder with its cache (ort_export), the fp32 graph parity-checked against the
    model."""
    from infbench.workloads.generate import ort_export

    return ort_export.build(params["spec"], params["device"], out_dir, params["precision"], params["attention"],
                            parity)


def parity(model, graph: Path, facts: dict, rtol: float = 1e-4) -> dict:
    """The fp32 graph in infbench's loop (batch 2, cache written in place) against a cache-free forward of the
    model over the same tokens: a wrong export fails here, before any cell reads it."""
    import numpy as np
    import torch

    from infbench.workloads.generate import accuracy
    from infbench.workloads.generate.ort import BoundDecoder

    prompt = torch.randint(1, int(model.config.vocab_size), (2, 5), generator=torch.Generator().manual_seed(1))
    tokens = torch.randint(1, int(model.config.vocab_size), (2, 4), generator=torch.Generator().manual_seed(2))
    loop = BoundDecoder(graph, facts, model.config, prompt.numpy(), tokens.shape[1], "cpu", "fp32")
    got = loop.forced(tokens.numpy())
    with torch.inference_mode():
        expected = accuracy.forward_logits(model, prompt, tokens)
    rel = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
    if not rel <= rtol:
        raise ValueError(f"exported decoder vs torch: parity check failed: rel_l2 {rel:.3g} > {rtol:g}")
    return {"batch": 2, "prompt_len": 5, "steps": 4, "rel_l2": rel, "rtol": rtol}


BUILDERS = {"ort_genai": build_genai, "ort_decoder": build_decoder}


def room(params: dict, out_dir: Path) -> None:
    """Fail at once, with both numbers, where the disk cannot hold the build's peak (footprint.build_gb):
    a 7B export fills tens of GB, and a full disk would break every job beside it."""
    from infbench.workloads.generate.footprint import GB, build_gb

    need = build_gb(params["spec"], params["engine"], params["precision"])["disk_gb"]
    free = shutil.disk_usage(out_dir).free / GB
    if free < need:
        raise OSError(f"not enough disk: the build needs about {need} GB at its peak, {free:.0f} GB free "
                      f"under {out_dir.parent}")


def build(params: dict, manifest: Path) -> dict:
    """Build the engine's directory (the manifest's parent) and write its manifest; a failure is a failed
    manifest with a one-line reason, never an exception."""
    from infbench.onnx_graphs import FUSED_OPS, describe
    from infbench.records import one_line
    from infbench.workloads.generate.ort_export import op_counts

    manifest = Path(manifest)
    out_dir = manifest.parent
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    info = {"status": "ok", "reason": None, "engine": params["engine"], "precision": params["precision"],
            "device": params["device"], "model_type": params["spec"]["model_type"], "libraries": params["libraries"]}
    start = time.perf_counter()
    try:
        reason = family_support(params["engine"], params["spec"])
        if reason:  # the workflow never asks for this build; a direct call says why
            raise ValueError(f"unsupported: {reason}")
        room(params, out_dir)
        info.update(BUILDERS[params["engine"]](params, out_dir))
        counts = op_counts(out_dir / info["graph"])
        info.update(op_counts=counts, fused_ops={op: counts[op] for op in FUSED_OPS if op in counts})
    except Exception as error:  # noqa: BLE001 - recorded for every cell that reads this directory
        log.exception("%s build failed", params["engine"])
        info.update(status="failed", reason=f"{params['engine']} build: {describe(error, one_line)}")
    info["seconds"] = time.perf_counter() - start
    manifest.write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def read_manifest(path: str | Path) -> dict:
    """A prepared directory's manifest; raises with its reason where the build failed."""
    info = json.loads(Path(path).read_text())
    if info.get("status") != "ok":
        raise RuntimeError(info.get("reason") or "the ONNX Runtime build failed")
    return info
