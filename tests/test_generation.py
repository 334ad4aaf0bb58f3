"""The generation workload on the CPU: decoding with a cache equals a full forward pass on every family the
loop supports (causal LMs: Llama, Qwen2, GPT-2; encoder–decoders: T5, BART); the teacher-forced check passes
correct paths and fails a mis-indexed cache; an encoder–decoder's loop encodes each generation's prompt, compiled
too; a recompile after preparation fails the compiled loop; a session writes every metric, an encoder–decoder's
cross-attention cache too, and its tables follow; bad generation config is one line naming the key; the timing
window keeps TTFT, steps and per-position medians."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from infbench import config as config_io
from infbench.measure.timing import TimingPolicy
from infbench.workloads.generate import accuracy, backends, session, tables, timing
from infbench.workloads.generate import model as decoder

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 512, "max_position_embeddings": 64}
FAMILIES = {
    "llama": {**TINY, "num_key_value_heads": 2},  # grouped-query attention
    "llama-mha": {**TINY, "num_key_value_heads": 4},
    "qwen2": {**TINY, "num_key_value_heads": 2},
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 512, "n_positions": 64},
    # encoder–decoders: T5 (relative positions, tied output layer scaled by d_model^-0.5), BART (learned positions)
    "t5": {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4, "d_kv": 16, "vocab_size": 512},
    "bart": {"d_model": 64, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "encoder_layers": 2, "decoder_layers": 2,
             "encoder_attention_heads": 4, "decoder_attention_heads": 4, "vocab_size": 512,
             "max_position_embeddings": 64},
}
PROMPT, NEW = 8, 6


def _spec(family: str) -> dict:
    return {"model_type": family.split("-")[0], "overrides": FAMILIES[family], "seed": 0}


def _built(family: str):
    model, facts = decoder.build(_spec(family), "cpu")
    prompt = session.prompt_ids(int(model.config.vocab_size), 2, PROMPT, 0, "cpu")
    return family, model, prompt, accuracy.reference(model, prompt, NEW)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request):
    return _built(request.param)


@pytest.fixture(scope="module")
def t5():
    return _built("t5")


def test_decoding_with_a_cache_equals_a_full_forward_pass(built):
    """Each cache path fed the reference sequence gives the logits of one cache-free forward over it."""
    family, model, prompt, reference = built
    assert reference["logits"].std() == pytest.approx(decoder.LOGIT_STD, rel=0.5)  # margins that mean something
    for engine, options in (("hf_generate", {}), ("hf_generate", {"cache": "static"}), ("static_loop", {})):
        generator = backends.prepare(engine, model, prompt, NEW, options)
        forced = generator.teacher_forced(reference["tokens"])
        np.testing.assert_allclose(forced, reference["logits"], rtol=0, atol=1e-4, err_msg=f"{family} {engine} {options}")
        generator.generate(lambda: None)
        assert (generator.tokens() == reference["tokens"]).all(), (family, engine, options)
        verdict = accuracy.judge(reference["logits"], reference["tokens"], forced, generator.tokens(), "fp32")
        assert verdict["passed"] and verdict["teacher_forced_top1"] == 1.0 and verdict["first_divergence"] is None


def test_an_encoder_decoder_caches_self_and_cross_attention(t5):
    """transformers' generate and the loop both hold an EncoderDecoderCache: a self-attention cache of the
    decoder's new_tokens positions and a cross-attention cache of the prompt's; the logits are scaled at the
    decoder's final norm (the encoder's input embeddings are the output layer's, left alone)."""
    from transformers import EncoderDecoderCache

    _, model, prompt, reference = t5
    loop = backends.prepare("static_loop", model, prompt, NEW, {})
    assert isinstance(loop.cache, EncoderDecoderCache) and loop.first == 1
    assert [layer.max_cache_len for layer in loop.cache.self_attention_cache.layers] == [NEW] * 2
    assert [layer.max_cache_len for layer in loop.cache.cross_attention_cache.layers] == [PROMPT] * 2
    assert loop.cache_info == {"kind": "static", "allocated_len": NEW, "cross_len": PROMPT}
    static = backends.prepare("hf_generate", model, prompt, NEW, {"cache": "static"})
    assert static.cache_info == loop.cache_info
    assert decoder.build(_spec("t5"), "cpu")[1]["lm_head_scaled"] == "decoder.final_layer_norm"
    geometry = decoder.geometry(model.config)
    assert geometry["layers"] == 2 and geometry["head_dim"] == 16 and geometry["positions"] == 0
    # a step reads the decoder and the (tied) output layer, not the encoder
    encoder = {p.data_ptr(): p.numel() for p in model.get_encoder().parameters()}
    shared = model.get_input_embeddings().weight
    encoder_only = sum(n for ptr, n in encoder.items() if ptr != shared.data_ptr())
    assert decoder.step_weight_bytes(model, "fp32") == decoder.weight_bytes(model, "fp32") - 4 * encoder_only


def test_an_encoder_decoder_loop_encodes_every_generations_prompt(t5):
    """Prefill clears the cross-attention cache's is_updated flags and fill counters: a new prompt written into
    the loop's prompt buffer is encoded and attended to, not the last generation's keys and values."""
    _, model, prompt, _ = t5
    loop = backends.prepare("static_loop", model, prompt.clone(), NEW, {})  # its own prompt buffer
    other = session.prompt_ids(int(model.config.vocab_size), 2, PROMPT, 1, "cpu")
    expected = accuracy.reference(model, other, NEW)
    loop.prompt.copy_(other)
    np.testing.assert_allclose(loop.teacher_forced(expected["tokens"]), expected["logits"], rtol=0, atol=1e-4)


def test_a_compiled_encoder_decoder_loop_is_one_graph_per_phase(t5):
    """Prefill and step compile (fullgraph) with the cache's Python-side flags inside them, equal the full forward
    pass, and neither recompiles across generations (the step always finds the cross-attention cached)."""
    _, model, prompt, reference = t5
    generator = backends.prepare("static_loop", model, prompt, NEW, {"compile": True})
    generator.warmed()
    forced = generator.teacher_forced(reference["tokens"])
    np.testing.assert_allclose(forced, reference["logits"], rtol=0, atol=1e-4)
    generator.generate(lambda: None)
    assert (generator.tokens() == reference["tokens"]).all()
    assert generator.prepare["graphs"] == 2 and generator.verify() is None  # caches allocated before the trace


def test_a_misindexed_cache_fails_the_teacher_forced_check(built):
    family, model, prompt, reference = built
    wrong = backends.prepare("static_loop", model, prompt, NEW, {"fault_misindexed_cache": True})
    verdict = accuracy.judge(reference["logits"], reference["tokens"], wrong.teacher_forced(reference["tokens"]),
                             wrong.tokens(), "fp32")
    assert not verdict["passed"] and verdict["logits_rel_err"] > accuracy.TOLERANCE["fp32"], (family, verdict)


def test_near_ties_are_excused_and_clear_steps_are_not():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 4, (1, 10, 50)).astype(np.float32)
    ref[0, 3, :2] = [30.0, 30.0 - 1e-4]  # a near-tie at step 3
    flipped = ref.copy()
    flipped[0, 3, :2] = ref[0, 3, [1, 0]]  # a correct implementation may flip it
    tokens = ref.argmax(-1)
    assert accuracy.judge(ref, tokens, flipped, tokens, "fp32")["teacher_forced_top1"] == 1.0
    clear = ref.copy()
    clear[0, 5] = ref[0, 5][::-1]  # a clear step answered differently
    assert accuracy.judge(ref, tokens, clear, tokens, "fp32")["teacher_forced_top1"] < 1.0


def test_a_recompile_after_preparation_fails_the_compiled_loop():
    model, _ = decoder.build(_spec("llama"), "cpu")
    prompt = session.prompt_ids(512, 1, PROMPT, 0, "cpu")
    generator = backends.prepare("static_loop", model, prompt, NEW, {"compile": True})
    generator.warmed()
    assert generator.prepare["compiled"] and generator.prepare["graphs"] == 2 and generator.verify() is None
    generator.logits = torch.zeros_like(generator.logits, dtype=torch.float64)  # a guard that no longer holds
    generator.generate(lambda: None)
    assert "recompile" in (generator.verify() or "")


def test_a_round_of_generations_keeps_every_step():
    calls = []

    def generate(mark):
        calls.append(1)
        for _ in range(NEW):
            mark()

    window = timing.measure(generate, TimingPolicy(warmup_s=0.0, warmup_min_iters=1, min_iters=5, max_iters=4,
                                                   budget_s=10.0, target_ci_rel_width=0.0), timing.HostMarks())
    assert window["window"]["generations"] == 4 and len(calls) == 5  # one warm-up, four timed
    assert len(window["samples_ms"]) == 4 * (NEW - 1) and len(window["ttft_ms"]) == 4
    assert len(window["step_medians_ms"]) == NEW - 1 and window["median_ms"] >= 0


def test_a_session_records_every_metric_and_says_what_could_not_run():
    cells = [{"key": session.cell_key("m", b, e, "fp32", 2, PROMPT, NEW), "options": o}
             for b, e, o in (("generate", "hf_generate", {}), ("loop", "static_loop", {}), ("trt", "tensorrt_llm", {}))]
    cells.append({"key": session.cell_key("m", "half", "static_loop", "fp16", 2, PROMPT, NEW), "options": {}})
    request = {"device": "cpu", "batch": 2, "prompt_len": PROMPT, "new_tokens": NEW, "spec": _spec("llama"), "seed": 0,
               "timing": {"warmup_s": 0.0, "warmup_min_iters": 1, "min_iters": 5, "max_iters": 3, "budget_s": 0.2,
                          "target_ci_rel_width": 0.05, "rounds": 2}, "cells": cells, "bandwidth_bytes_per_s": 1e10}
    recs = {r["key"]["backend"]: r for r in session.run_shape(request)}
    assert recs["trt"]["status"] == "unavailable" and "TensorRT-LLM" in recs["trt"]["reason"]
    assert recs["half"]["status"] == "unsupported"
    for name in ("generate", "loop"):
        record = recs[name]
        assert record["status"] == "ok", record["reason"]
        gen = record["generation"]
        assert gen["tpot_ms"] > 0 and gen["ttft_ms"] > 0 and None not in gen["step_ms"]
        assert gen["tpot_ci95_ms"][0] <= gen["tpot_ms"] <= gen["tpot_ci95_ms"][1]
        assert gen["tokens_per_s"]["total"] == pytest.approx(2 * gen["tokens_per_s"]["per_sequence"])
        assert gen["floor_ms"] > 0 and gen["tpot_over_floor"] == pytest.approx(gen["tpot_ms"] / gen["floor_ms"])
        assert gen["cache"]["bytes"] == decoder.kv_bytes(decoder.config_of(_spec("llama")), "fp32", 2, PROMPT + NEW)
        assert record["accuracy"]["passed"] and record["memory"]["weights_bytes"] > 0
        assert len(record["timing"]["rounds"]) == 2 and record["model"]["lm_head_scale"] > 1
        assert gen["kernels"] is None  # profiled on a GPU only
        phases = record["session_phases"]
        assert set(phases) == {"prepare_s", "rounds_s", "finish_s"} and min(phases.values()) > 0
    assert recs["generate"]["generation"]["cache"] == {**recs["generate"]["generation"]["cache"], "kind": "dynamic"}
    assert recs["loop"]["generation"]["cache"]["allocated_len"] == PROMPT + NEW


def test_an_encoder_decoder_session_records_both_caches_and_its_tables_follow():
    cells = [{"key": session.cell_key("t5", b, e, "fp32", 2, PROMPT, NEW), "options": o}
             for b, e, o in (("generate", "hf_generate", {}), ("loop", "static_loop", {}),
                             ("wrong", "static_loop", {"fault_misindexed_cache": True}))]
    request = {"device": "cpu", "batch": 2, "prompt_len": PROMPT, "new_tokens": NEW, "spec": _spec("t5"), "seed": 0,
               "timing": {"warmup_s": 0.0, "warmup_min_iters": 1, "min_iters": 5, "max_iters": 3, "budget_s": 0.2,
                          "target_ci_rel_width": 0.05, "rounds": 2}, "cells": cells, "bandwidth_bytes_per_s": 1e10}
    recs = session.run_shape(request)
    config = decoder.config_of(_spec("t5"))
    by_name = {r["key"]["backend"]: r for r in recs}
    for name in ("generate", "loop"):
        record = by_name[name]
        assert record["status"] == "ok" and record["accuracy"]["passed"], record.get("reason")
        cache = record["generation"]["cache"]
        assert cache["cross_len"] == PROMPT and cache["cross_bytes"] == decoder.kv_bytes(config, "fp32", 2, PROMPT)
        assert cache["bytes"] == decoder.kv_bytes(config, "fp32", 2, NEW)  # the decoder's positions, not the prompt's
        assert record["generation"]["floor_ms"] > 0 and record["model"]["seq2seq"] and record["model"]["encoder_layers"] == 2
    assert by_name["generate"]["generation"]["floor_read_len"] == NEW // 2
    assert by_name["loop"]["generation"]["floor_read_len"] == NEW
    assert by_name["wrong"]["status"] == "ok" and not by_name["wrong"]["accuracy"]["passed"]
    frames = tables.build(recs, {"backend": "generate", "precision": "fp32"})
    rows = frames["generation"].set_index("backend")
    assert rows.loc["loop", "cross_kv_bytes"] == decoder.kv_bytes(config, "fp32", 2, PROMPT)
    best = frames["generation_best"]
    assert len(best) == 1 and best["backend"].iloc[0] in ("generate", "loop")  # never the failing cache path


GENERATION = {"models": {"tl": {"model_type": "llama", "overrides": FAMILIES["llama"]}},
              "backends": {"generate": {"engine": "hf_generate"}, "loop": {"engine": "static_loop"}},
              "prompt_lens": [16], "new_tokens": 8}


@pytest.mark.parametrize("change, key", [
    (lambda g: g.update(prompt_lens=[60]), "generation.prompt_lens"),
    (lambda g: g.update(batch_sizes=[0]), "generation.batch_sizes[0]"),
    (lambda g: g["backends"].update(x={"engine": "vllm"}), "generation.backends.x.engine"),
    (lambda g: g["backends"]["generate"].update(options={"cuda_graph": True}), "generation.backends.generate.options"),
    (lambda g: g["backends"]["loop"].update(options={"cuda_graph": True}), "generation.backends.loop.options.cuda_graph"),
    (lambda g: g.update(baseline={"backend": "nope", "precision": "fp32"}), "generation.baseline.backend"),
    (lambda g: g["backends"]["loop"].update(precisions=["bf16"]), "generation.backends.loop.precisions"),
    (lambda g: g.update(new_tokens=0), "generation.new_tokens"),
    (lambda g: g["models"].update(x={"model_type": "vit"}), "generation.models.x.model_type"),  # not an LM
    (lambda g: g["models"].update(x={"model_type": "no-such-model"}), "generation.models.x.model_type"),
    (lambda g: g["models"].update(x={"model_type": "t5", "overrides": {"num_layers": 1, "num_decoder_layers": 2}}),
     "generation.models.x.overrides"),  # transformers' generate sizes its caches by num_layers
    (lambda g: g["models"].update(x={"model_type": "bart", "overrides": {"max_position_embeddings": 8}}),
     "generation.prompt_lens"),
    (lambda g: g["models"].update(x={"model_type": "phi3", "overrides": {**TINY, "num_key_value_heads": 2}}),
     "generation.models.x.overrides"),  # Phi-3's default pad_token_id 32000, beyond a vocabulary of 512
])
def test_bad_generation_config_is_one_line_naming_the_key(change, key):
    generation = copy.deepcopy(GENERATION)
    change(generation)
    config = {"device": "cpu", "models": {"b": {"model_type": "bert"}}, "backends": {"eager": {"engine": "torch"}},
              "generation": generation}
    with pytest.raises(config_io.ConfigError) as error:
        config_io.check_generation_models(config_io.validate(config))
    message = str(error.value)
    assert message.startswith(f"invalid config: {key}") and "\n" not in message, message


def test_an_encoder_decoders_positions_are_checked_per_stack():
    """T5's positions are relative: no prompt is too long for it. BART's encoder takes the prompt and its decoder
    the new tokens, each within max_position_embeddings, not their sum."""
    generation = copy.deepcopy(GENERATION)
    generation["models"] = {"t5": _spec("t5"), "bart": {"model_type": "bart", "overrides": FAMILIES["bart"]}}
    generation.update(prompt_lens=[64], new_tokens=64)
    config = {"device": "cpu", "models": {"b": {"model_type": "bert"}}, "backends": {"eager": {"engine": "torch"}},
              "generation": generation}
    config_io.check_generation_models(config_io.validate(config))
    assert config_io.generation_kind("t5", generation["models"]["t5"]) == "seq2seq"
    assert config_io.generation_kind("tl", GENERATION["models"]["tl"]) == "causal"


def test_the_default_baseline_is_transformers_generate_with_its_default_cache():
    config = config_io.validate({"models": {"b": {"model_type": "bert"}}, "backends": {"eager": {"engine": "torch"}},
                                 "generation": copy.deepcopy(GENERATION)})
    assert config_io.generation_baseline(config) == {"backend": "generate", "precision": "fp32"}
    assert len(config_io.generation_cells(config)) == 2


def test_tools_over_records_find_a_generation_cells_shape():
    """retry_failed and rerun_unstable force a cell's shape bundle: a generation cell's is named by its prompt and
    new tokens, not by a sequence length it does not have."""
    from infbench import records

    assert records.shape_stem(session.cell_key("m", "b", "static_loop", "fp16", 8, 128, 64)) == "b8_p128_n64"
    assert records.shape_stem({"model": "m", "batch": 4, "seq_len": 16}) == "b4_s16"


def test_kernels_per_token_say_how_busy_a_step_was():
    from infbench.workloads.generate import profile

    step = profile.with_gap({"kernels_per_token": 300.0, "kernel_ms_per_token": 1.2}, 1.5)
    assert step["busy_share"] == pytest.approx(0.8) and step["gap_ms"] == pytest.approx(0.3)
    overlapped = profile.with_gap({"kernels_per_token": 10.0, "kernel_ms_per_token": 2.0}, 1.5)  # streams overlap
    assert overlapped["busy_share"] == 1.0 and overlapped["gap_ms"] == 0.0
    assert profile.with_gap(None, 1.5) is None
    assert profile.kernels_per_token(lambda mark: None, 8) is None  # no GPU here: nothing to count


def test_the_top_kernels_say_where_a_step_goes():
    from infbench.workloads.generate import profile

    named = [("gemv", 30.0)] * 8 + [("attention", 10.0)] * 8 + [("norm", 1.0)] * 16 + [("x" * 300, 0.5)]
    top = profile.top_kernels(named, new_tokens=8, keep=3)
    assert [k["name"] for k in top] == ["gemv", "attention", "norm"]
    assert top[0] == {"name": "gemv", "ms_per_token": pytest.approx(0.03), "per_token": 1.0}
    assert top[2]["per_token"] == 2.0 and len(profile.top_kernels(named, 8)[-1]["name"]) == 120


def test_a_graphed_backend_that_launched_no_graph_is_a_fallback():
    """A backend that captured CUDA graphs but whose profiled generation launched none ran uncaptured: its cell
    fails. Not judged without graphs, without a profile, or where the profile saw no runtime calls."""
    from infbench.workloads.generate import profile

    launched = {"kernels_per_token": 300.0, "kernel_ms_per_token": 1.2, "graph_launches_per_token": 1.0}
    dropped = {**launched, "graph_launches_per_token": 0.0}
    assert "launched none" in profile.graph_fallback(("onnxruntime enable_cuda_graph",), dropped)
    assert profile.graph_fallback(("step",), launched) is None
    assert profile.graph_fallback(None, dropped) is None
    assert profile.graph_fallback(("step",), None) is None
    assert profile.graph_fallback(("step",), {**launched, "graph_launches_per_token": None}) is None


def test_a_jobs_footprint_counts_each_copy_of_the_weights_once():
    """The memory a session is scheduled by: the meta-device parameter count is the built model's; an ort_genai
    cell adds a copy of the weights, a second ort_decoder cell of one graph (build) adds only its cache and
    margin, a cell of the other attention's graph a copy; a
    larger batch adds cache; the fp32 reference bounds a session of fp16 PyTorch cells from below."""
    from infbench.workloads.generate import footprint

    for family in ("llama", "gpt2", "t5"):
        model, _ = decoder.build(_spec(family), "cpu")
        assert footprint.parameter_count(_spec(family)) == decoder.parameters(model), family
    big = {"model_type": "llama", "overrides": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                                                "num_attention_heads": 32, "vocab_size": 32000}}
    weights_gb = footprint.parameter_count(big) * 2 / footprint.GB
    torch_only = [("hf_generate", "fp16"), ("static_loop", "fp16")]
    base = footprint.session_gb(big, torch_only, 1, 128, 128)
    genai = [*torch_only, ("ort_genai", "fp16")]
    one = footprint.session_gb(big, genai, 1, 128, 128)
    two = footprint.session_gb(big, [*genai, ("ort_genai", "fp16")], 1, 128, 128)
    gqa, sdpa = ("ort_decoder-gqa", "fp16"), ("ort_decoder-sdpa", "fp16")  # two builds: two graphs
    one_graph = footprint.session_gb(big, [*genai, gqa], 1, 128, 128)
    two_cells = footprint.session_gb(big, [*genai, gqa, gqa], 1, 128, 128)
    two_graphs = footprint.session_gb(big, [*genai, gqa, sdpa], 1, 128, 128)
    assert base >= 2 * weights_gb  # the fp32 reference is the peak of a PyTorch-only fp16 session
    assert two - one >= weights_gb and one_graph - one >= weights_gb  # (beyond the fp32 reference's peak)
    assert two_cells - one_graph <= 2  # a cache and a margin, not another copy
    assert two_graphs - two_cells >= weights_gb - 1
    assert footprint.session_gb(big, torch_only, 32, 128, 128) > base
    disk = {(engine, precision): footprint.build_gb(big, engine, precision)["disk_gb"]
            for engine in ("ort_genai", "ort_decoder") for precision in ("fp32", "fp16")}
    assert disk["ort_genai", "fp16"] >= 2 * weights_gb  # the saved model and the builder's graph
    assert disk["ort_decoder", "fp32"] > disk["ort_decoder", "fp16"] >= 2 * weights_gb  # typed: fused in memory


def _gpu_generation_record(name: str, busy_share: float, host_drift: float, session_id: str = "s") -> dict:
    """A generation record as a GPU session leaves it before ``summarize``: five rounds whose medians move ±4 %."""
    rng = np.random.default_rng(0)
    rounds = [{"index": i, "median_ms": m, "samples_ms": list(m * (1 + 0.002 * rng.standard_normal(50))),
               "ttft_ms": [3 * m] * 3} for i, m in enumerate((2.0, 2.08, 1.96, 2.04, 1.92))]
    for r in rounds:
        r["median_ms"] = float(np.median(r["samples_ms"]))
    return {"key": session.cell_key("m", name, "static_loop", "fp16", 8, PROMPT, NEW), "device": {"kind": "cuda"},
            "timing": {"rounds": rounds, "session": session_id, "policy": {"host_drift": host_drift}},
            "generation": {"floor_ms": 0.5, "kernels": {"kernels_per_token": 300.0, "kernel_ms_per_token": 2.0 * busy_share}}}


def test_a_generation_interval_carries_the_hosts_drift_by_the_share_of_a_step_the_device_waits():
    """TPOT's and TTFT's intervals widen with ``timing.host_drift`` by how much of a step the device waits on
    the host (a host-bound step moves with it, a graph replay keeping the device busy barely does); a paired
    ratio widens by how far its two cells part, and not at all between cells that move alike."""
    from infbench import tables as forward_tables

    def width(record, key):
        lo, hi = record["generation"][key]
        return hi / lo

    still = session.summarize(_gpu_generation_record("graph", 0.95, 0.0), {})
    graph = session.summarize(_gpu_generation_record("graph", 0.95, 0.22), {})
    host = session.summarize(_gpu_generation_record("host", 0.3, 0.22), {})
    for key in ("tpot_ci95_ms", "ttft_ci95_ms"):
        assert width(still, key) < width(graph, key) < width(host, key)
    assert graph["generation"]["tpot_ms"] == pytest.approx(still["generation"]["tpot_ms"])  # the point never moves
    assert graph["generation"]["kernels"]["busy_share"] == pytest.approx(0.95, abs=0.01)
    assert graph["throughput"]["tokens_per_s"] == pytest.approx(8e3 / graph["generation"]["tpot_ms"])
    assert graph["generation"]["tpot_over_floor"] == pytest.approx(graph["generation"]["tpot_ms"] / 0.5)

    parted = forward_tables.compare_cells(host, graph)
    alike = forward_tables.compare_cells(host, session.summarize(_gpu_generation_record("host2", 0.3, 0.22), {}))
    plain = forward_tables.compare_cells(session.summarize(_gpu_generation_record("host", 0.3, 0.0), {}), still)
    assert parted["method"].endswith("host drift 0.22") and "host drift" not in alike["method"]
    assert parted["hi"] / parted["lo"] > 1.2 * plain["hi"] / plain["lo"]
    assert alike["lo"] == plain["lo"] and alike["hi"] == plain["hi"]  # the same rounds: host and host2 move alike


def test_resummarize_rederives_a_generation_cell_with_a_new_host_drift(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from infbench import records

    record = {**session.summarize(_gpu_generation_record("host", 0.3, 0.0), {}), "status": "ok",
              "schema_version": records.SCHEMA_VERSION}
    path = tmp_path / "cells" / "m.json"
    path.parent.mkdir()
    records.write_all([(record, path)])
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "scripts.resummarize", str(path.parent), "--host-drift", "0.22"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("1 records resummarized"), done.stderr
    again = records.read(path)
    lo, hi = again["generation"]["tpot_ci95_ms"]
    assert again["timing"]["policy"]["host_drift"] == 0.22 and again["timing"]["ci95_ms"] == [lo, hi]
    assert hi / lo > 1.2 * (record["generation"]["tpot_ci95_ms"][1] / record["generation"]["tpot_ci95_ms"][0])


@pytest.mark.parametrize("model_type, overrides, status", [
    # a sliding window longer than the generation: its layers attend as full ones, every generation from 0
    ("mistral", {**TINY, "num_key_value_heads": 2}, "ok"),
    ("gemma2", {**TINY, "num_key_value_heads": 2, "head_dim": 16}, "ok"),  # sliding and full layers alternate
    # a window the generation outgrows: transformers slides it on the host, which a captured step cannot follow
    ("mistral", {**TINY, "num_key_value_heads": 2, "sliding_window": 8}, "unsupported"),
    # one cached KV head (multi-query), and every head (Falcon's new layout caches its keys expanded)
    ("falcon", {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512}, "ok"),
    ("falcon", {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512,
                "new_decoder_architecture": True, "num_kv_heads": 2}, "ok"),
])
def test_the_loop_runs_sliding_window_and_multi_query_families_right_or_says_why_not(model_type, overrides, status):
    """Two generations and the teacher-forced pass each restart the loop's cache: a transformers sliding-window
    layer counted its fill in a Python int that no restart reset, so every generation after the first read a
    cache it took for full (Mistral, Gemma 2 failed the accuracy check); Falcon's cache has 1 or all heads,
    not num_kv_heads."""
    spec = {"model_type": model_type, "overrides": overrides, "seed": 0}
    cells = [{"key": session.cell_key("m", "loop", "static_loop", "fp32", 2, PROMPT, NEW), "options": {}}]
    request = {"device": "cpu", "batch": 2, "prompt_len": PROMPT, "new_tokens": NEW, "spec": spec, "seed": 0,
               "timing": {"warmup_s": 0.0, "warmup_min_iters": 1, "min_iters": 4, "max_iters": 3, "budget_s": 0.2,
                          "target_ci_rel_width": 0.05, "rounds": 2}, "cells": cells, "bandwidth_bytes_per_s": 1e10}
    record = session.run_shape(request)[0]
    assert record["status"] == status, record["reason"]
    if status == "ok":
        assert record["accuracy"]["passed"]
        model, _ = decoder.build(spec, "cpu")
        heads = model.model.layers[0].self_attn if model_type != "falcon" else model.transformer.h[0].self_attention
        cached = model(input_ids=torch.ones(1, 2, dtype=torch.long), use_cache=True).past_key_values.layers[0].keys
        assert record["generation"]["cache"]["bytes"] == decoder.kv_bytes(model.config, "fp32", 2, PROMPT + NEW)
        assert decoder.geometry(model.config)["kv_heads"] == cached.shape[1], heads
    else:
        assert "sliding-window attention of 8 positions" in record["reason"]


@pytest.mark.parametrize("model_type", ["bart", "pegasus"])
def test_the_reference_is_pure_greedy_whatever_the_familys_generation_defaults(model_type):
    """BART and Pegasus force their end-of-sequence token at the last position through `generate`'s defaults:
    the reference would end in a token its own logits do not pick, and every loop would leave it there."""
    spec = {"model_type": model_type, "overrides": FAMILIES["bart"], "seed": 0}
    model, _ = decoder.build(spec, "cpu")
    prompt = session.prompt_ids(512, 2, PROMPT, 0, "cpu")
    reference = accuracy.reference(model, prompt, NEW)
    assert (reference["tokens"] == reference["logits"].argmax(-1)).all()
