"""A generation shape session (model, batch, prompt_len): every backend prepared once, timed in interleaved
rounds, each cell's record finished (generation metrics, accuracy, memory, floor).

Order, as in the forward workload's session (infbench.cell): the fp32 reference first (built on the device,
greedy, then freed unless an fp32 cell needs the model), one model per precision shared by that precision's
backends (weights are read-only; each backend has its own cache and buffers), every backend prepared and
warmed (compiles, graph captures) beside other sessions' preparation but never beside a round, then the
rounds, holding the host's timing lock, then verification and accuracy outside any window. Whatever fails
becomes the cell's record: a backend that cannot run is ``unsupported``/``unavailable``, an exception is
``failed`` with one line, a recompile or an eager fallback after the warm-up fails the cell.
"""

from __future__ import annotations

import logging
import statistics
import time
import traceback
import uuid
import zlib

import numpy as np

from infbench import devices, environment, records
from infbench.cell import stability
from infbench.measure import host_response, memory, stats
from infbench.measure.rounds import run_rounds
from infbench.measure.timing import TimingPolicy, policy_record
from infbench.workloads.generate import accuracy, backends, model as decoder, profile, timing

log = logging.getLogger("infbench.generate")


def prompt_ids(vocab: int, batch: int, prompt_len: int, seed: int, device: str):
    """The shape's prompt: seeded random token ids (0 is the pad id, never drawn)."""
    import torch

    generator = torch.Generator().manual_seed(seed + zlib.crc32(f"{batch}|{prompt_len}".encode()))
    return torch.randint(1, vocab, (batch, prompt_len), generator=generator).to(device)


def cell_key(model: str, backend: str, engine: str, precision: str, batch: int, prompt_len: int, new_tokens: int) -> dict:
    return {"workload": "generate", "model": model, "backend": backend, "engine": engine, "precision": precision,
            "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens}


def run_shape(request: dict) -> list[dict]:
    """A shape job's request (scripts/bench_generate.py) → its cells' records, in the request's order."""
    device, batch, prompt_len, new_tokens = request["device"], request["batch"], request["prompt_len"], request["new_tokens"]
    spec, policy = request["spec"], TimingPolicy.from_config(request["timing"])
    software = environment.software()
    recs, generators, trackers = [], {}, {}
    for cell in request["cells"]:
        record = records.new_record(cell["key"], cell["options"], request.get("log"))
        record["env"] = dict(software)
        record["device"] = environment.cpu_device(request.get("threads", 1)) if device == "cpu" else environment.cuda_device()
        recs.append(record)
    names = [f"{c['key']['backend']}/{c['key']['precision']}" for c in request["cells"]]
    clock = time.perf_counter()
    with devices.host_shared(device):
        prompt, reference, models = _prepare_models(request, recs, spec, device, batch, prompt_len, new_tokens)
        for name, cell, record in zip(names, request["cells"], recs):
            if record["status"] is not None:
                continue
            generator, tracker = _prepare(cell, record, models, prompt, new_tokens, device)
            if generator is not None:
                generators[name], trackers[name] = generator, tracker
    for generator in generators.values():  # after every backend's preparation: compile counters are global
        generator.warmed()
    phases = {"prepare_s": time.perf_counter() - clock}
    log.info("session prepared in %.1f s: %s", phases["prepare_s"], ", ".join(
        f"{n} {g.prepare.get('seconds', 0):.1f} s" for n, g in generators.items()))
    session = uuid.uuid4().hex[:12]
    results, errors = {}, {}
    clock = time.perf_counter()
    if generators:
        results, errors = run_rounds({n: g.generate for n, g in generators.items()}, policy,
                                     timing.marks_for(device, new_tokens), request.get("seed", 0),
                                     hold=lambda: devices.host_exclusive(device),
                                     device_state=environment.gpu_state if device == "cuda" else None,
                                     window=timing.measure)
    phases["rounds_s"] = time.perf_counter() - clock  # waiting for the host's timing lock included
    log.info("rounds done in %.1f s", phases["rounds_s"])
    clock = time.perf_counter()
    with devices.host_exclusive(device):
        # every verification before any teacher forcing: a forced pass may compile (its own cache), and the
        # compile counters that verification reads are the process's
        problems = {name: generator.verify() for name, generator in generators.items()}
        for name, record in zip(names, recs):
            if name in generators:
                start = time.perf_counter()
                _finish(record, generators[name], trackers[name], results.get(name, []), errors.get(name),
                        problems[name], reference, models, request, session, policy)
                generators[name].close()
                record["finish_s"] = round(time.perf_counter() - start, 2)
                log.info("%s: profiled, forced and judged in %.1f s", name, record["finish_s"])
    phases["finish_s"] = time.perf_counter() - clock
    log.info("verified, profiled and judged in %.1f s", phases["finish_s"])
    for record in recs:  # what the session's phases cost (every cell of the shape shares them)
        record["session_phases"] = {k: round(v, 2) for k, v in phases.items()}
    return recs


def _prepare_models(request, recs, spec, device, batch, prompt_len, new_tokens):
    """The prompt, the fp32 reference and one model per precision the session's runnable cells need."""
    precisions = []
    for cell, record in zip(request["cells"], recs):
        key = cell["key"]
        reason = backends.supports(key["engine"], key["precision"], device, spec, cell["options"])
        status = "unsupported"
        if reason is None:
            reason, status = backends.available(key["engine"], device, cell["options"]), "unavailable"
        if reason:
            records.finish(record, status, reason)
        elif key["precision"] not in precisions:
            precisions.append(key["precision"])
    if not precisions:
        return None, None, {}
    try:
        fp32, facts = decoder.build(spec, device, "fp32")
        prompt = prompt_ids(int(fp32.config.vocab_size), batch, prompt_len, int(request.get("seed", 0)), device)
        reference = {**accuracy.reference(fp32, prompt, new_tokens), **facts}
        models = {"fp32": (fp32, facts)} if "fp32" in precisions else {}
        del fp32
        if device == "cuda":  # the fp32 model's memory back to the device (sessions prepare side by side)
            import torch

            torch.cuda.empty_cache()
        reference["noise"] = {}
        for precision in precisions:
            if precision not in models:
                models[precision] = decoder.build(spec, device, precision)
            reference["noise"][precision] = accuracy.precision_noise(models[precision][0], prompt, reference)
        return prompt, reference, models
    except Exception as error:  # noqa: BLE001 - a model that cannot be built fails its cells, not the run
        log.error("model build or reference failed:\n%s", traceback.format_exc())
        reason = f"model build or reference failed: {type(error).__name__}: {records.one_line(str(error))}"
        for record in recs:
            if record["status"] is None:
                records.finish(record, "failed", reason)
        return None, None, {}


def _prepare(cell, record, models, prompt, new_tokens, device):
    key = cell["key"]
    tracker = memory.Tracker("torch", device)
    tracker.start()
    try:
        generator = backends.prepare(key["engine"], models[key["precision"]][0], prompt, new_tokens, cell["options"])
    except backends.Unsupported as reason:
        records.finish(record, "unsupported", records.one_line(str(reason)))
        return None, None
    except Exception as error:  # noqa: BLE001 - a backend that cannot prepare is a failed record
        log.error("%s/%s failed in prepare:\n%s", key["backend"], key["precision"], traceback.format_exc())
        records.finish(record, "failed", f"{type(error).__name__}: {records.one_line(str(error))}")
        return None, None
    tracker.prepared()
    record["prepare"] = generator.prepare
    return generator, tracker


def _finish(record, generator, tracker, rounds, error, problem, reference, models, request, session, policy) -> None:
    key = record["key"]
    try:
        if error or not rounds:
            records.finish(record, "failed", error or "no round was timed")
            return
        record["prepare"] = generator.prepare
        record["timing"] = {"rounds": rounds, "session": session, "policy": policy_record(policy, rounds[0]["window"]["clock"])}
        model = models[key["precision"]][0]
        record["generation"] = metrics(rounds, generator, model, key, request)
        record["generation"]["kernels"] = (profile.kernels_per_token(generator.generate, key["new_tokens"])
                                           if request["device"] == "cuda" else None)
        summarize(record, request.get("stability") or {})
        fallback = profile.graph_fallback(getattr(generator, "graphs", None), record["generation"]["kernels"])
        if fallback:
            records.finish(record, "failed", fallback)
            return
        free = generator.tokens()  # the last timed generation's own tokens, before teacher forcing overwrites them
        forced = generator.teacher_forced(reference["tokens"])
        record["accuracy"] = accuracy.judge(reference["logits"], reference["tokens"], forced, free,
                                            key["precision"], reference["noise"][key["precision"]])
        tracker.call(lambda: generator.generate(lambda: None))
        weights = decoder.weight_bytes(model, key["precision"])
        record["memory"] = {**tracker.record(), "weights_bytes": weights,
                            "what": "the backend's own memory (cache, buffers, graphs, workspaces) above the "
                                    "shared weights; weights_bytes: the model's, shared by the precision's backends"}
        record["model"] = {"lm_head_scale": reference["lm_head_scale"], "lm_head_scaled": reference["lm_head_scaled"],
                           "build_s": models[key["precision"]][1]["build_s"], "parameters": decoder.parameters(model),
                           "seq2seq": decoder.is_seq2seq(model.config), **decoder.geometry(model.config)}
        records.finish_timed(record, problem, "non-finite logits")
    except Exception as failure:  # noqa: BLE001
        log.error("%s failed after timing:\n%s", key["backend"], traceback.format_exc())
        records.finish(record, "failed", f"{type(failure).__name__}: {records.one_line(str(failure))}")


def metrics(rounds: list[dict], generator, model, key: dict, request: dict) -> dict:
    """The record's ``generation`` section but what ``summarize`` derives from the rounds: the first and last
    step, the end-to-end time, the cache and the decode floor at the device's measured bandwidth."""
    firsts = [r["step_medians_ms"][0] for r in rounds if r["step_medians_ms"]]
    lasts = [r["step_medians_ms"][-1] for r in rounds if r["step_medians_ms"]]
    batch, prompt_len, new_tokens, precision = key["batch"], key["prompt_len"], key["new_tokens"], key["precision"]
    cache = dict(generator.cache_info)
    # the positions a self-attention cache holds at the end: prompt + new tokens, or a decoder's new_tokens (its
    # start token and every generated token but the last)
    full = new_tokens if decoder.is_seq2seq(model.config) else prompt_len + new_tokens
    # what a step reads: a static cache attends over its whole allocated length; a dynamic one over what is filled
    read_len = cache.get("allocated_len") or (full - new_tokens + new_tokens // 2)
    cache["bytes"] = decoder.kv_bytes(model.config, precision, batch, cache.get("allocated_len") or full)
    kv_read = decoder.kv_bytes(model.config, precision, batch, read_len)
    if "cross_len" in cache:  # an encoder–decoder's step also attends over the prompt's cross-attention cache
        cache["cross_bytes"] = decoder.kv_bytes(model.config, precision, batch, cache["cross_len"])
        kv_read += cache["cross_bytes"]
    floor = decoder.decode_floor_ms(decoder.step_weight_bytes(model, precision), kv_read,
                                    request.get("bandwidth_bytes_per_s"))
    return {"step_ms": [statistics.median(firsts) if firsts else None, statistics.median(lasts) if lasts else None],
            "e2e_ms": float(np.median([e for r in rounds for e in r["e2e_ms"]])),
            "cache": cache, "floor_ms": floor, "floor_read_len": read_len,
            "step_timing": "device events between steps, read after the generation (no added host sync)"
            if request["device"] == "cuda" else "host clock between steps (CPU steps return when done)"}


def summarize(record: dict, limits: dict) -> dict:
    """A generation record's statistics from its rounds: TPOT (the timing section: every decode step of the
    round's generations), TTFT, tokens/s, TPOT over the floor, the device's busy share of a step, stability.
    The one place they are derived, at measuring time and again by scripts/resummarize.py. Both intervals carry
    the policy's ``systematic_rel`` and ``host_drift``, the latter through the cell's host response: the share
    of its step that the device waits (infbench.measure.host_response.of_record; all of it on a CPU)."""
    timing, gen = record["timing"], record["generation"]
    rounds = timing["rounds"]
    tpot = stats.geometric_mean([r["median_ms"] for r in rounds])  # the summary's point: no interval term moves it
    gen["kernels"] = profile.with_gap(gen.get("kernels"), tpot)
    policy = timing.get("policy") or {}
    terms = (float(policy.get("systematic_rel") or 0.0), float(policy.get("host_drift") or 0.0),
             host_response.of_record(record))
    summary = stats.summarize_rounds([r["samples_ms"] for r in rounds], *terms)
    record["timing"] = {**summary, **{k: timing[k] for k in ("session", "rounds", "policy") if k in timing}}
    ttft = stats.summarize_rounds([r["ttft_ms"] for r in rounds], *terms)
    batch, floor = record["key"]["batch"], gen.get("floor_ms")
    gen.update(ttft_ms=ttft["median_ms"], ttft_ci95_ms=ttft["ci95_ms"], tpot_ms=summary["median_ms"],
               tpot_ci95_ms=summary["ci95_ms"],
               tokens_per_s={"per_sequence": 1e3 / summary["median_ms"], "total": batch * 1e3 / summary["median_ms"]},
               tpot_over_floor=summary["median_ms"] / floor if floor else None)
    record["stability"] = stability(record["timing"], record["device"], limits)
    record["throughput"] = {"tokens_per_s": gen["tokens_per_s"]["total"]}
    return record
