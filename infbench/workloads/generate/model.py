"""The decoder a generation session times: built from its spec on the device, its geometry and its bytes.

Built, not loaded: random weights from the model's transformers config and seed, in fp32 (so every precision
casts the same function), directly in the device's memory (a Llama-2-7B geometry never passes through the
host or the disk). Random weights give near-flat logits (std ≈ sqrt(hidden) × initializer_range: 0.16 for a
64-wide toy, 1.3 for Llama-2-7B), where greedy decoding meets ties that no backend can be judged by; the
output layer is therefore scaled so that the logits' std is ``LOGIT_STD`` (recorded as ``lm_head_scale``),
which gives top-1 margins that a wrong cache path cannot hide in.
"""

from __future__ import annotations

import math
import time

LOGIT_STD = 4.0
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def torch_dtype(precision: str):
    import torch

    return getattr(torch, DTYPES[precision])


def config_of(spec: dict):
    from transformers import AutoConfig

    return AutoConfig.for_model(spec["model_type"], **(spec.get("overrides") or {}))


def build(spec: dict, device: str, precision: str = "fp32"):
    """(model, facts): the causal LM of ``spec`` with seeded random weights on ``device`` at ``precision``.

    Weights are initialised in fp32 and cast, so two builds of one spec compute the same function at every
    precision; ``facts`` holds the build's seconds and the output layer's scale."""
    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    config = config_of(spec)
    torch.manual_seed(int(spec.get("seed", 0)))
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    scale = lm_head_scale(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(scale)
    model = model.eval().to(torch_dtype(precision))
    model.generation_config.eos_token_id = None  # every backend generates exactly new_tokens tokens
    model.generation_config.pad_token_id = 0
    if device == "cuda":
        torch.cuda.synchronize()
    return model, {"build_s": time.perf_counter() - start, "lm_head_scale": scale,
                   "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False))}


def lm_head_scale(config) -> float:
    """The factor that brings random logits' std from sqrt(hidden) × initializer_range to LOGIT_STD."""
    hidden = geometry(config)["hidden"]
    init = float(getattr(config, "initializer_range", 0.02) or 0.02)
    return LOGIT_STD / (math.sqrt(hidden) * init)


def geometry(config) -> dict:
    """Layers, KV heads and head size (whatever the family calls them: attribute_map covers GPT-2's n_layer)."""
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return {"layers": int(config.num_hidden_layers), "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
            "head_dim": head_dim, "vocab": int(config.vocab_size),
            "positions": int(getattr(config, "max_position_embeddings", 0) or 0)}


def kv_bytes(config, precision: str, batch: int, length: int) -> int:
    """Bytes of keys and values for ``length`` positions of ``batch`` sequences over every layer."""
    g = geometry(config)
    return 2 * g["layers"] * g["kv_heads"] * g["head_dim"] * BYTES[precision] * batch * length


def parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def weight_bytes(model, precision: str) -> int:
    """Bytes of the model's weights (tied embeddings counted once): what its memory holds."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    return total * BYTES[precision]


def step_weight_bytes(model, precision: str) -> int:
    """Bytes of weights one decode step reads: every weight once, except an input embedding table that is not
    also the output layer (a step gathers only its batch's rows of it)."""
    embedding = model.get_input_embeddings().weight
    tied = embedding.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    return weight_bytes(model, precision) - (0 if tied else embedding.numel() * BYTES[precision])


def decode_floor_ms(weights: int, kv_read: int, bandwidth: float | None) -> float | None:
    """The time one decode step needs at the device's measured bandwidth: every weight and the KV cache it
    attends over read once (a batch-1 step is bound by memory, not by FLOPs)."""
    if not bandwidth:
        return None
    return (weights + kv_read) / bandwidth * 1e3
