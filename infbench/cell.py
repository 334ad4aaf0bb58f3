"""One cell, start to finish: capability checks, prepare, time, check accuracy, write the record.

Whatever happens, a record is written: a cell the engine cannot run is ``unsupported`` (static) or
``unavailable`` (this machine), an exception or a failed verification is ``failed`` with a one-line reason,
and only a cell whose timed path was verified is ``ok``.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from infbench import accuracy, artifacts, engines, environment, records
from infbench.engines.base import CellContext, CellUnusable
from infbench.timing import CudaEventClock, HostClock, TimingPolicy, measure

log = logging.getLogger("infbench.cell")


@dataclass
class CellSpec:
    key: dict  # model, backend, engine, precision, batch, seq_len
    options: dict
    model_dir: Path
    graph_path: Path | None
    reference: Path
    device: str
    threads: int
    policy: TimingPolicy
    tolerance: float
    stability: dict | None = None
    engine_path: Path | None = None
    log_path: str | None = None
    process_start: float | None = None  # perf_counter() at process start, to account for per-cell overhead
    lease_wait_s: float = 0.0  # seconds the job waited for a free GPU before its cell started


def spec_from_request(request: dict) -> CellSpec:
    """A cell job's request (what scripts/bench_cell.py parsed) → the spec."""
    params = request["cell"]
    return CellSpec(
        key=params["key"],
        options=params["options"],
        model_dir=Path(request["manifest"]).parent,
        graph_path=Path(request["graph"]) if request.get("graph") else None,
        reference=Path(request["reference"]),
        device=params["device"],
        threads=request["threads"],
        policy=TimingPolicy.from_config(params["timing"]),
        tolerance=params["tolerance"],
        stability=params.get("stability"),
        engine_path=Path(request["engine"]) if request.get("engine") else None,
        log_path=request.get("log"),
        process_start=request.get("process_start"),
        lease_wait_s=request.get("lease_wait_s") or 0.0,
    )


def run_request(request: dict) -> dict:
    """Run a cell job's request and write its record: what a cell job does, in-process or in a worker."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    record = run(spec_from_request(request))
    if "worker" in request:
        record["cost"]["worker"] = request["worker"]
    records.write(record, request["out"])
    log.info("%s %s", record["status"], record["reason"] or "")
    return record


def failed_without_record(request: dict, reason: str) -> dict:
    """The record of a cell whose process died before writing one (crash, kill): the failure is kept."""
    spec = spec_from_request(request)
    record = records.new_record(spec.key, spec.options, spec.log_path)
    record = records.finish(record, "failed", reason)
    records.write(record, request["out"])
    return record


def run(spec: CellSpec) -> dict:
    """Measure one cell and return its record (the caller writes it)."""
    record = _run(spec)
    record["cost"] = cost(record, spec.process_start, spec.lease_wait_s)
    return record


def cost(record: dict, process_start: float | None, lease_wait_s: float = 0.0) -> dict:
    """Where the cell job's time went: measuring (warm-up + timed loop) vs everything else (imports,
    loading, compiling) — the per-cell price of one process per cell. Time spent waiting for a free GPU
    is not the cell's: it is reported apart and left out of both."""
    policy = (record.get("timing") or {}).get("policy") or {}
    measuring = policy.get("warmup_seconds", 0.0) + policy.get("loop_seconds", 0.0)
    process = time.perf_counter() - process_start - lease_wait_s if process_start is not None else None
    return {
        "lease_wait_s": lease_wait_s,
        "process_s": process,
        "prepare_s": (record.get("prepare") or {}).get("seconds"),
        "measure_s": measuring,
        "overhead_s": process - measuring if process is not None else None,
    }


def _run(spec: CellSpec) -> dict:
    record = records.new_record(spec.key, spec.options, spec.log_path)
    record["env"] = environment.software()
    record["device"] = (environment.cpu_device(spec.threads) if spec.device == "cpu"
                        else {"kind": spec.device, "threads": spec.threads})
    engine = engines.get(spec.key["engine"])
    for status, check in (("unsupported", lambda: engine.supports(spec.key["precision"], spec.device)),
                          ("unavailable", lambda: engine.available(spec.device, spec.options))):
        reason = check()
        if reason:
            log.info("%s: %s", status, reason)
            return records.finish(record, status, reason)
    try:
        return _measure(spec, engine, record)
    except CellUnusable as error:
        log.info("%s: %s", error.status, error)
        return records.finish(record, error.status, records.one_line(str(error)))
    except Exception as error:  # noqa: BLE001 - any engine failure becomes a failed record, never a lost cell
        log.error("cell failed:\n%s", traceback.format_exc())
        return records.finish(record, "failed", f"{type(error).__name__}: {records.one_line(str(error))}")


def stability(timing: dict, device: dict, limits: dict) -> dict:
    """Is the number trustworthy as a steady state: spread of the iterations, and (GPU) the SM clock
    before vs after timing. An unstable cell keeps its number but is flagged, with why."""
    max_cv, max_clock = limits.get("max_cv", 0.1), limits.get("max_clock_change", 0.1)
    reasons = []
    cv = timing.get("cv")
    if cv is not None and cv > max_cv:
        reasons.append(f"cv {cv:.3f} > {max_cv}")
    clock = device.get("sm_clock_mhz")
    change = None
    if isinstance(clock, list) and None not in clock and clock[0]:
        change = abs(clock[1] - clock[0]) / clock[0]
        if change > max_clock:
            reasons.append(f"SM clock moved {clock[0]}→{clock[1]} MHz")
    return {"unstable": bool(reasons), "why": "; ".join(reasons) or None, "cv": cv, "max_cv": max_cv,
            "clock_change": change, "max_clock_change": max_clock}


def peak_rss_bytes() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _clock(spec: CellSpec):
    if spec.device == "cuda":
        return CudaEventClock(flush_l2=spec.policy.flush_l2)
    return HostClock()


def _measure(spec: CellSpec, engine, record: dict) -> dict:
    manifest = artifacts.read_manifest(spec.model_dir)
    inputs, references = artifacts.load_reference(spec.reference, manifest["input_names"])
    context = CellContext(spec.model_dir, spec.graph_path, inputs, spec.key["precision"], spec.options,
                          spec.device, spec.threads, spec.engine_path)
    runner = engine.prepare(context)
    try:
        record["prepare"] = runner.prepare
        clock = _clock(spec)
        if spec.device == "cuda":
            record["device"] = environment.cuda_device()
        timing = measure(runner.run, spec.policy, clock)
        if spec.device == "cuda":
            record["device"] = environment.before_after(record["device"], environment.nvml_sample())
        problem = runner.verify()
        record["prepare"] = runner.prepare
        record["timing"] = timing
        record["stability"] = stability(timing, record["device"], spec.stability or {})
        batch, seq_len = spec.key["batch"], spec.key["seq_len"]
        seconds = timing["median_ms"] / 1e3
        record["throughput"] = {"sequences_per_s": batch / seconds, "tokens_per_s": batch * seq_len / seconds}
        record["accuracy"] = accuracy.judge(runner.output(), references, spec.tolerance)
        record["memory"] = {"peak_bytes": peak_rss_bytes(), "what": "process peak RSS (host)",
                            "device_peak_bytes": runner.device_peak_bytes()}
    finally:
        runner.close()
    if problem:
        return records.finish(record, "failed", problem)
    if not record["accuracy"]["finite"]:
        return records.finish(record, "failed", "non-finite values in the output")
    return records.finish(record, "ok")
