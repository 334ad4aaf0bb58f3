"""The cells of one shape, start to finish: capability checks, prepare, rounds, accuracy, records.

A *shape session* measures every cell of one (model, batch, seq_len) in one process: each cell is prepared
once (load, compile, engine), then all are timed in interleaved rounds (infbench.measure.rounds), so the
baseline and every candidate of the shape are measured seconds apart in every round and their speedups
are paired in time. After the rounds, outside any timed window: the engine's own verification (no eager
fallback, no recompile), the GPU busy share (a profiled pass), the accuracy check.

Whatever happens, every cell gets a record: a cell the engine cannot run is ``unsupported`` (static) or
``unavailable`` (this machine); an exception in prepare or in a round, or a failed verification, is
``failed`` with a one-line reason; only a cell whose timed path was verified is ``ok``. A crash or a hang of
the whole process is pinned on the cell it was working on by the session's progress file (see
``scripts/bench_shape.py``), which records that cell as failed and measures the others again without it.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from infbench import accuracy, artifacts, devices, engines, environment, records
from infbench.engines.base import CellContext, CellUnusable
from infbench.measure import gpu_busy, host_response, memory, stats
from infbench.measure.rounds import run_rounds
from infbench.measure.timing import CudaEventClock, HostClock, TimingPolicy, policy_record

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

    @property
    def name(self) -> str:
        return f"{self.key['backend']}/{self.key['precision']}"


def spec_from_request(request: dict, cell: dict) -> CellSpec:
    """One cell of a shape job's request (what scripts/bench_shape.py parsed) → its spec."""
    return CellSpec(
        key=cell["key"],
        options=cell["options"],
        model_dir=Path(request["manifest"]).parent,
        graph_path=Path(cell["graph"]) if cell.get("graph") else None,
        reference=Path(request["reference"]),
        device=request["device"],
        threads=request["threads"],
        policy=TimingPolicy.from_config(request["timing"]),
        tolerance=cell["tolerance"],
        stability=request.get("stability"),
        # a TensorRT plan (build_engine) or an AOTInductor package (compile_aoti): what the engine loads
        engine_path=Path(cell["engine"]) if cell.get("engine") else Path(cell["package"]) if cell.get("package") else None,
        log_path=request.get("log"),
    )


def run_request(request: dict) -> list[dict]:
    """A shape job's request → its cells' records, written as one bundle (request['out'])."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    specs = [spec_from_request(request, cell) for cell in request["cells"]]
    progress = Progress(request.get("progress"), request.get("step_timeout_s"))
    recs = run_shape(specs, progress=progress, seed=request.get("seed"))  # None: the shape's own seed
    process_s = time.perf_counter() - request["process_start"] if request.get("process_start") is not None else None
    measuring = sum((r.get("cost") or {}).get("measure_s") or 0.0 for r in recs)
    for record in recs:
        # the session's process time is shared by its cells: imports, loads, compiles, idle spacing
        waited = devices.host_waited_s()
        record["cost"].update(lease_wait_s=request.get("lease_wait_s") or 0.0, process_s=process_s,
                              session_measure_s=measuring, session_cells=len(recs), host_wait_s=waited,
                              overhead_s=process_s - measuring - waited if process_s is not None else None,
                              what="process_s and overhead_s are the shape session's, shared by its cells; "
                                   "host_wait_s: waiting for other sessions' rounds or preparation (not its cost)")
        if "worker" in request:
            record["cost"]["worker"] = request["worker"]
        log.info("%s %s: %s %s", record["key"]["backend"], record["key"]["precision"], record["status"],
                 record["reason"] or "")
    records.write_bundle(recs, request["out"])
    progress.step("done")
    return recs


def run(spec: CellSpec) -> dict:
    """Measure one cell on its own (a shape session of one cell) and return its record."""
    return run_shape([spec])[0]


class Progress:
    """What the session is doing, one JSON line per step, so that whoever outlives a crash or a hang knows
    which cell caused it. Each step re-arms a watchdog (faulthandler, a C thread that needs no GIL): a step
    that outlasts ``timeout_s`` dumps the stacks into the log and ends the process."""

    def __init__(self, path: str | None, timeout_s: float | None):
        self.path, self.timeout_s = path, timeout_s

    def pause(self) -> None:
        """Waiting on others (a host lock): no watchdog meanwhile."""
        if self.timeout_s:
            faulthandler.cancel_dump_traceback_later()

    def resume(self) -> None:
        """The wait is over: the current step's watchdog runs again, from now."""
        if self.timeout_s:
            faulthandler.dump_traceback_later(self.timeout_s, exit=True)

    def step(self, what: str, cell: str | None = None, round_index: int | None = None) -> None:
        if self.path:
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"step": what, "cell": cell, "round": round_index, "t": time.time()}) + "\n")
        if self.timeout_s:
            faulthandler.cancel_dump_traceback_later()
            if what not in ("done", "wait"):  # waiting on others is not this session's step running long
                faulthandler.dump_traceback_later(self.timeout_s, exit=True)


def last_step(path: str | Path) -> dict | None:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return None
    return json.loads(lines[-1]) if lines else None


def shape_seed(key: dict) -> int:
    """The rounds' shuffle seed: fixed per shape (a rerun shuffles alike), different across shapes."""
    return zlib.crc32(f"{key['model']}|{key['batch']}|{key['seq_len']}".encode())


def run_shape(specs: list[CellSpec], progress: Progress | None = None, seed: int | None = None) -> list[dict]:
    """Prepare every cell of one shape, time them in interleaved rounds, finish their records (in order)."""
    progress = progress or Progress(None, None)
    session = uuid.uuid4().hex[:12]
    software = environment.software()  # one session, one environment: git and package metadata read once
    recs = [_new(spec, software) for spec in specs]
    prepared: dict[str, tuple[CellSpec, dict, object, dict]] = {}
    trackers: dict[str, memory.Tracker] = {}  # each cell's own memory, measured around its prepare and one call
    where = specs[0].device if specs else "cpu"
    waiting = lambda: progress.step("wait")  # noqa: E731 - others' rounds or preparation: no watchdog
    devices.set_wait_hooks(progress.pause, progress.resume)  # waits inside a step (autotune benchmarks)
    # preparation is heavy (compiles, loads, captures): beside other sessions' preparation, never beside a round
    with devices.host_shared(where, on_wait=waiting):
        for spec, record in zip(specs, recs):
            progress.step("prepare", spec.name)
            tracker = memory.Tracker(spec.key["engine"], spec.device)
            tracker.start()
            result = _prepare(spec, record)
            tracker.prepared()
            if result is not None:
                prepared[spec.name] = (spec, record, *result)
                trackers[spec.name] = tracker
    try:
        if prepared:
            first = next(iter(prepared.values()))[0]
            device = environment.cuda_device() if first.device == "cuda" else None
            results, errors = run_rounds(
                {name: runner.run for name, (_, _, runner, _) in prepared.items()}, first.policy, _clock(first),
                shape_seed(first.key) if seed is None else seed, on_step=lambda name, i: progress.step("round", name, i),
                hold=lambda: devices.host_exclusive(where, on_wait=waiting),
                device_state=environment.gpu_state if first.device == "cuda" else None)
            after = environment.nvml_sample() if first.device == "cuda" else None
            # the profiled pass times kernels too, and engines' teardown frees device memory: not beside a round
            with devices.host_exclusive(where, on_wait=waiting):
                # the session-wide device peaks before any cell's own memory probe resets the allocator's peak
                device_peaks = {name: runner.device_peak_bytes() for name, (_, _, runner, _) in prepared.items()}
                for name, (spec, record, runner, references) in prepared.items():
                    progress.step("finish", name)
                    if device is not None:
                        record["device"] = environment.before_after(dict(device), after)
                    _finish(spec, record, runner, references, results[name], errors.get(name), session,
                            trackers[name], device_peaks[name])
                _close(prepared)
    finally:
        _close(prepared)
    return recs


def _close(prepared: dict) -> None:
    """Close every prepared runner once (after the finish step, or on the way out of an error)."""
    while prepared:
        _, (_, _, runner, _) = prepared.popitem()
        runner.close()


def _new(spec: CellSpec, software: dict) -> dict:
    record = records.new_record(spec.key, spec.options, spec.log_path)
    # what of the model is timed (the whole model, an encoder-decoder's encoder, a decoder's prefill)
    manifest = spec.model_dir / "manifest.json"
    record["benchmarked"] = json.loads(manifest.read_text()).get("benchmarked") if manifest.exists() else None
    record["env"] = dict(software)
    record["device"] = (environment.cpu_device(spec.threads) if spec.device == "cpu"
                        else {"kind": spec.device, "threads": spec.threads})
    return record


def _prepare(spec: CellSpec, record: dict):
    """(runner, references) of a cell ready to time, or None with its record finished (why not)."""
    engine = engines.get(spec.key["engine"])
    for status, check in (("unsupported", lambda: engine.supports(spec.key["precision"], spec.device)),
                          ("unavailable", lambda: engine.available(spec.device, spec.options))):
        reason = check()
        if reason:
            log.info("%s %s: %s", spec.name, status, reason)
            records.finish(record, status, reason)
            return None
    try:
        manifest = artifacts.read_manifest(spec.model_dir)
        inputs, references = artifacts.load_reference(spec.reference, manifest["input_names"])
        context = CellContext(spec.model_dir, spec.graph_path, inputs, spec.key["precision"], spec.options,
                              spec.device, spec.threads, spec.engine_path)
        runner = engine.prepare(context)
        record["prepare"] = runner.prepare
        return runner, references
    except CellUnusable as error:
        log.info("%s %s: %s", spec.name, error.status, error)
        records.finish(record, error.status, records.one_line(str(error)))
    except Exception as error:  # noqa: BLE001 - any engine failure becomes a failed record, never a lost cell
        log.error("%s failed in prepare:\n%s", spec.name, traceback.format_exc())
        records.finish(record, "failed", f"{type(error).__name__}: {records.one_line(str(error))}")
    return None


def _finish(spec: CellSpec, record: dict, runner, references, rounds: list[dict], error: str | None,
            session: str, tracker: memory.Tracker | None = None, device_peak: int | None = None) -> None:
    """The record of a timed cell: verification, statistics over rounds, GPU busy share, accuracy."""
    try:
        if error:
            records.finish(record, "failed", error)
            return
        problem = runner.verify()
        record["prepare"] = runner.prepare
        record["timing"] = {"session": session, "rounds": rounds,
                            "policy": policy_record(spec.policy, rounds[0]["window"]["clock"])}
        if spec.device == "cuda":  # before the summary: the between-run term needs the host response
            latency = stats.geometric_mean([r["median_ms"] for r in rounds])
            record["gpu_busy"] = _gpu_busy(runner, latency)
        summarize(record, spec.stability or {})
        record["accuracy"] = accuracy.judge(runner.output(), references, spec.tolerance)
        record["memory"] = {"peak_bytes": peak_rss_bytes(), "what": "peak RSS of the shape session (host)",
                            "device_peak_bytes": runner.device_peak_bytes() if device_peak is None else device_peak}
        if tracker is not None:  # the session-wide peaks are read before: this resets the allocator's peak
            tracker.call(runner.run)
            record["memory"].update(tracker.record())
        measuring = sum(r["window"]["warmup_seconds"] + r["window"]["loop_seconds"] for r in rounds)
        record["cost"] = {"prepare_s": (record.get("prepare") or {}).get("seconds"), "measure_s": measuring}
        records.finish_timed(record, problem, "non-finite values in the output")
    except Exception as failure:  # noqa: BLE001
        log.error("%s failed after timing:\n%s", spec.name, traceback.format_exc())
        records.finish(record, "failed", f"{type(failure).__name__}: {records.one_line(str(failure))}")


def summarize(record: dict, limits: dict) -> dict:
    """The record's statistics from its rounds (timing summary, throughput, stability): the one place they
    are derived, at measuring time and again by scripts/resummarize.py when the estimator changes."""
    timing = record["timing"]
    policy = timing.get("policy") or {}
    summary = stats.summarize_rounds([r["samples_ms"] for r in timing["rounds"]], policy.get("systematic_rel", 0.0),
                                     policy.get("host_drift", 0.0), host_response.of_record(record))
    record["timing"] = {**summary, **{k: timing[k] for k in ("session", "rounds", "policy") if k in timing}}
    record["stability"] = stability(record["timing"], record["device"], limits)
    batch, seq_len = record["key"]["batch"], record["key"]["seq_len"]
    seconds = summary["median_ms"] / 1e3
    record["throughput"] = {"sequences_per_s": batch / seconds, "tokens_per_s": batch * seq_len / seconds}
    return record


def _gpu_busy(runner, latency_ms: float) -> dict:
    try:
        return gpu_busy.measure(runner.run, latency_ms)
    except Exception as error:  # noqa: BLE001 - a diagnosis that fails is said, never a failed cell
        return {"kernel_ms": None, "share": None, "class": None, "why": f"{type(error).__name__}: {records.one_line(str(error))}"}


def failed_without_record(request: dict, cell: dict, reason: str) -> dict:
    """The record of a cell whose session died on it (crash, hang) before writing one: the failure is kept."""
    spec = spec_from_request(request, cell)
    return records.finish(records.new_record(spec.key, spec.options, spec.log_path), "failed", reason)


def stability(timing: dict, device: dict, limits: dict) -> dict:
    """Is the number trustworthy as a steady state: spread of the iterations within a round (the drift
    between rounds is in the interval, not a fault), and (GPU) the SM clock before vs after timing. An
    unstable cell keeps its number but is flagged, with why."""
    max_cv, max_clock = limits.get("max_cv", 0.1), limits.get("max_clock_change", 0.1)
    reasons = []
    cv = timing.get("within_round_cv", timing.get("cv"))
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
