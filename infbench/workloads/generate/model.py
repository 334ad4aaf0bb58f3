"""The model a generation session times: built from its spec on the device, its geometry and its bytes.

A causal LM (``AutoModelForCausalLM``) or an encoder–decoder (``AutoModelForSeq2SeqLM``: T5, BART; its config
says ``is_encoder_decoder``). An encoder–decoder generates from its decoder: the prompt is the encoder's input,
the decoder starts from ``decoder_start_token_id``, and a decode step reads the decoder's weights and the output
layer (never the encoder's), its self-attention cache and the cross-attention keys and values of the prompt.

Built, not loaded: random weights from the model's transformers config and seed, in fp32 (so every precision
casts the same function), directly in the device's memory (a Llama-2-7B geometry never passes through the
host or the disk). Random weights give near-flat logits (std ≈ sqrt(hidden) × initializer_range: 0.16 for a
64-wide toy, 1.3 for Llama-2-7B; ≈ 1 for a T5 of any width, whose tied output layer sees its hidden state
scaled by d_model^-0.5), where greedy decoding meets ties that no backend can be judged by; the logits are
therefore scaled so that their std is ``LOGIT_STD`` (recorded as ``lm_head_scale``, with the weight it was
applied to), which gives top-1 margins that a wrong cache path cannot hide in.
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


def is_seq2seq(config) -> bool:
    """An encoder–decoder (T5, BART): generated through AutoModelForSeq2SeqLM, its decoder over the prompt's
    encoding; otherwise a causal LM over the prompt itself."""
    return bool(getattr(config, "is_encoder_decoder", False))


def decoder_start(config) -> int:
    """The token an encoder–decoder's decoder starts from: its config's, else the pad id (T5's convention; a
    config built from T5Config's defaults names none)."""
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(config, "pad_token_id", None)
    return int(start or 0)


def build(spec: dict, device: str, precision: str = "fp32"):
    """(model, facts): the causal LM or encoder–decoder of ``spec`` with seeded random weights on ``device`` at
    ``precision``.

    Weights are initialised in fp32 and cast, so two builds of one spec compute the same function at every
    precision; ``facts`` holds the build's seconds, the logits' scale and the weight it was applied to."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    start = time.perf_counter()
    config = config_of(spec)
    torch.manual_seed(int(spec.get("seed", 0)))
    auto = AutoModelForSeq2SeqLM if is_seq2seq(config) else AutoModelForCausalLM
    with torch.device(device):
        model = auto.from_config(config, dtype=torch.float32)
    scale = lm_head_scale(config)
    with torch.no_grad():
        scaled = scale_logits(model, scale)
    model = model.eval().to(torch_dtype(precision))
    model.generation_config.eos_token_id = None  # every backend generates exactly new_tokens tokens
    model.generation_config.pad_token_id = 0
    for key in PROCESSORS:  # pure greedy everywhere: `generate` would apply a family's defaults, no loop does
        if getattr(model.generation_config, key, None) is not None:
            setattr(model.generation_config, key, None)
    if is_seq2seq(config):
        model.generation_config.decoder_start_token_id = decoder_start(config)
    if device == "cuda":
        torch.cuda.synchronize()
    return model, {"build_s": time.perf_counter() - start, "lm_head_scale": scale, "lm_head_scaled": scaled,
                   "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False))}


# generation-config defaults under which transformers' `generate` changes greedy tokens (BART and Pegasus force
# their end-of-sequence token at the last position; others suppress tokens or penalise repeats)
PROCESSORS = ("forced_eos_token_id", "forced_bos_token_id", "forced_decoder_ids", "suppress_tokens",
              "begin_suppress_tokens", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
              "repetition_penalty", "encoder_repetition_penalty", "sequence_bias", "exponential_decay_length_penalty",
              "min_length", "min_new_tokens")


def scale_logits(model, scale: float) -> str:
    """Multiply the model's logits by ``scale``; return the weight that was scaled.

    The output layer's weight, except in an encoder–decoder whose output layer is the shared input embedding
    and whose decoder ends in a norm that feeds only the output layer (T5): there the norm's weight, so that
    the encoder's input is not scaled with it (a 4× embedding would drown the prompt's share of the logits)."""
    output = model.get_output_embeddings().weight
    tied = output.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    norm = getattr(model.get_decoder(), "final_layer_norm", None) if is_seq2seq(model.config) else None
    if tied and getattr(norm, "weight", None) is not None:
        norm.weight.mul_(scale)
        return "decoder.final_layer_norm"
    output.mul_(scale)
    return "output layer"


def random_logit_std(config) -> float:
    """The std of a freshly initialised model's logits. Most families: sqrt(hidden) × initializer_range (a
    unit-RMS final hidden state through an output layer of that std; BART calls it init_std). The T5 family:
    the output layer's std is initializer_factor, and where the decoder's output is scaled by d_model^-0.5
    before it (T5's ``scale_decoder_outputs``, true unless the config says its embeddings are untied; mT5 never
    scales) the std is initializer_factor alone."""
    hidden = geometry(config)["hidden"]
    if getattr(config, "d_kv", None) and getattr(config, "initializer_factor", None) is not None:
        factor = float(config.initializer_factor)
        return factor if getattr(config, "scale_decoder_outputs", False) else factor * math.sqrt(hidden)
    init = float(getattr(config, "initializer_range", None) or getattr(config, "init_std", None) or 0.02)
    return math.sqrt(hidden) * init


def lm_head_scale(config) -> float:
    """The factor that brings random logits' std to LOGIT_STD."""
    return LOGIT_STD / random_logit_std(config)


def _first(config, *names, default=None):
    """The first of ``names`` the config has a value for (families name one quantity differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def geometry(config) -> dict:
    """Layers with a KV cache, KV heads and head size, whatever the family calls them (attribute_map covers
    GPT-2's n_layer). For an encoder–decoder these are the decoder's (T5's num_decoder_layers and d_kv,
    BART's decoder_layers and decoder_attention_heads), and ``encoder_layers`` says how deep its encoder is;
    ``positions`` is 0 where positions are relative (T5)."""
    hidden = int(config.hidden_size)
    seq2seq = is_seq2seq(config)
    heads = int(_first(config, "decoder_attention_heads", default=config.num_attention_heads) if seq2seq
                else config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or _kv_heads_by_other_names(config) or heads)
    head_dim = int(_first(config, "d_kv", "head_dim", default=None) or hidden // heads)
    layers = int(_first(config, "num_decoder_layers", "decoder_layers", default=config.num_hidden_layers) if seq2seq
                 else config.num_hidden_layers)
    g = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
         "vocab": int(config.vocab_size), "positions": int(getattr(config, "max_position_embeddings", 0) or 0)}
    if seq2seq:
        g["encoder_layers"] = int(_first(config, "num_layers", "encoder_layers", default=config.num_hidden_layers))
    return g


def _kv_heads_by_other_names(config) -> int | None:
    """The heads transformers caches in the families that do not call them num_key_value_heads: one for
    multi-query attention (Falcon's original layout, GPT-BigCode), every head for Falcon's new decoder
    architecture (its keys are expanded before the cache), else Falcon's num_kv_heads."""
    if getattr(config, "new_decoder_architecture", False):
        return None
    if getattr(config, "multi_query", False):
        return 1
    return getattr(config, "num_kv_heads", None)


def kv_bytes(config, precision: str, batch: int, length: int) -> int:
    """Bytes of keys and values for ``length`` positions of ``batch`` sequences over every (decoder) layer:
    a self-attention cache of ``length`` positions, or an encoder–decoder's cross-attention cache of a
    ``length``-token prompt (same layers, heads and head size)."""
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
    """Bytes of weights one decode step reads: every weight once -- of an encoder–decoder, the decoder's and
    the output layer's (the encoder ran in prefill) -- except an input embedding table that is not also the
    output layer (a step gathers only its batch's rows of it)."""
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings().weight
    tied = embedding.data_ptr() == output.data_ptr()
    if not is_seq2seq(model.config):
        return weight_bytes(model, precision) - (0 if tied else embedding.numel() * BYTES[precision])
    seen, total = set(), 0
    for p in [*model.get_decoder().parameters(), output]:
        if p.data_ptr() not in seen and (tied or p.data_ptr() != embedding.data_ptr()):
            seen.add(p.data_ptr())
            total += p.numel()
    return total * BYTES[precision]


def decode_floor_ms(weights: int, kv_read: int, bandwidth: float | None) -> float | None:
    """The time one decode step needs at the device's measured bandwidth: every weight and the KV cache it
    attends over (an encoder–decoder's: self- and cross-attention) read once (a batch-1 step is bound by
    memory, not by FLOPs)."""
    if not bandwidth:
        return None
    return (weights + kv_read) / bandwidth * 1e3
