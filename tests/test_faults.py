"""Faults and bad input, end to end: every fault becomes a record with a one-line reason while the rest of the
DAG, the tables and the report complete (no --keep-going); a killed run resumes without losing or redoing
finished cells; bad input stops before any job with one line naming the key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO, snakemake

from infbench import cell, onnx_graphs, records
from infbench.engines.base import CellUnusable

TINY = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
TINY.pop("generation", None)  # the forward workload's faults; generation has its own tests


def config_with(backends: dict, **changes) -> dict:
    config = {**TINY, "backends": backends, "precisions": ["fp32"], **changes}
    config["timing"] = {**TINY["timing"], "budget_s": 0.1}
    return config


def write(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))


def read_records(workdir: Path) -> dict[tuple, dict]:
    out = {}
    for path in (workdir / "results/cells").rglob("*.json"):
        record = json.loads(path.read_text())
        key = record["key"]
        out[(key["backend"], key["batch"], key["seq_len"])] = record
    return out


def test_every_fault_becomes_a_record_and_the_report_completes(tmp_path):
    backends = {
        "eager": {"engine": "torch"},
        "raise": {"engine": "fault", "options": {"fault": "raise"}},
        "crash": {"engine": "fault", "options": {"fault": "crash"}},
        "hang": {"engine": "fault", "options": {"fault": "hang"}},
        "nan": {"engine": "fault", "options": {"fault": "nan"}},
        "oom": {"engine": "fault", "options": {"fault": "oom", "oom_from_batch": 2}},
        "missing": {"engine": "fault", "options": {"fault": "unavailable"}},
        "ort": {"engine": "onnxruntime", "options": {"graph": "exported"}},
    }
    # an export whose parity check cannot pass: the graph build fails, its cells must say why
    config = config_with(backends, batch_sizes=[1, 2], seq_lens=[8], cell_timeout_s=15,
                         onnx={"parity_rtol": 1e-15})
    write(tmp_path, config)
    run = snakemake(tmp_path, "--configfile", "c.yaml")  # no --keep-going: it must still finish
    assert (tmp_path / "report/index.html").exists()
    got = read_records(tmp_path)
    assert len(got) == len(backends) * 2

    def status(backend, batch=1):
        record = got[(backend, batch, 8)]
        return record["status"], record["reason"]

    assert status("eager") == ("ok", None)
    assert status("raise") == ("failed", "RuntimeError: fault engine: injected failure")
    # the crash took the whole shape session down: pinned on its cell, the others measured again without it
    assert status("crash") == ("failed", "the shape session exited with 139 during prepare before writing records")
    assert status("hang")[0] == "failed" and status("hang")[1].startswith("timed out after 15 s")
    assert status("nan") == ("failed", "non-finite values in the output")
    assert status("oom", 1)[0] == "ok" and status("oom", 2) == ("failed", "MemoryError: fault engine: out of memory at batch 2")
    assert status("missing") == ("unavailable", "fault engine: library deliberately unavailable")
    assert status("ort")[0] == "failed" and status("ort")[1].startswith("graph exported: ONNX export: ValueError:")
    assert "parity check failed" in status("ort")[1]
    for record in got.values():
        assert "\n" not in (record["reason"] or "") and record["log"]
    cells = pd.read_csv(tmp_path / "results/tables/cells.csv")
    assert len(cells) == len(got)
    # issue 29: out of memory is the machine's failure, not the cell's answer (a crash, a hang, a NaN are)
    assert got[("oom", 2, 8)]["retry"] is True and got[("oom", 2, 8)]["retry_why"] == "out of memory"
    assert not any(got[(b, 1, 8)]["retry"] for b in ("raise", "crash", "hang", "nan", "ort"))
    assert "infbench: 1 cell(s) failed for reasons of the machine (1 out of memory)" in run.stderr
    assert "scripts.retry_failed" in run.stderr
    # a plain rerun keeps every answer; retry_failed forces the failed cells' shapes and the failed export
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--configfile", "c.yaml").stdout
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    retry = subprocess.run([str(BIN / "python"), "-m", "scripts.retry_failed", "--", "--snakefile",
                            str(REPO / "Snakefile"), "--cores", "2", "--configfile", "c.yaml", "-n"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr[-2000:]
    for forced in ("results/shapes/tiny-bert/b1_s8.json", "results/shapes/tiny-bert/b2_s8.json",
                   "results/onnx/tiny-bert/exported.onnx"):
        assert f"{forced}: " in retry.stdout  # listed with why
    assert "Forced execution" in retry.stdout and "rule export_onnx:" in retry.stdout
    assert "Nothing to be done" not in retry.stdout
    only = subprocess.run([str(BIN / "python"), "-m", "scripts.retry_failed", "--environmental", "--list"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert only.stdout.splitlines() == [
        "results/shapes/tiny-bert/b2_s8.json: results/cells/tiny-bert/oom/fp32/b2_s8.json: "
        "MemoryError: fault engine: out of memory at batch 2"], only.stdout


def test_a_failed_graph_step_propagates_to_its_conversions_and_cells(tmp_path):
    graph = tmp_path / "exported.onnx"

    def broken():
        raise RuntimeError("exporter crashed\nwith a second line")

    info = onnx_graphs.guarded("ONNX export", graph, broken)
    assert info["status"] == "failed" and info["reason"] == "ONNX export: RuntimeError: exporter crashed"
    converted = onnx_graphs.guarded("fp16 conversion", tmp_path / "exported_fp16.onnx", broken, upstream=graph)
    assert converted["reason"] == "exported failed: ONNX export: RuntimeError: exporter crashed"


def test_a_corrupt_graph_is_reported_not_timed(tiny_run, tmp_path):
    from test_engines import spec

    for suffix in (".onnx", ".json"):
        source = tiny_run / f"results/onnx/tiny-bert/exported{suffix}"
        (tmp_path / f"exported{suffix}").write_bytes(source.read_bytes())
    data = bytearray((tmp_path / "exported.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "exported.onnx").write_bytes(bytes(data))
    cell_spec = spec(tiny_run, "ort", "onnxruntime", graph="exported")
    cell_spec.graph_path = tmp_path / "exported.onnx"
    record = cell.run(cell_spec)
    assert record["status"] == "failed" and "does not match its sidecar's sha256" in record["reason"]
    assert "timing" not in record or not record.get("timing")


def test_failed_build_status_becomes_the_cells_status():
    error = CellUnusable("unavailable", "engine build unavailable: tensorrt not importable")
    assert error.status == "unavailable" and str(error).startswith("engine build")


def test_killed_run_resumes_without_losing_or_redoing_cells(tmp_path):
    backends = {"eager": {"engine": "torch"}, "ort": {"engine": "onnxruntime", "options": {"graph": "exported"}}}
    config = config_with(backends, batch_sizes=[1, 2, 3], seq_lens=[8, 16])
    config["timing"] = {**config["timing"], "budget_s": 1.5, "target_ci_rel_width": 0.0001}  # slow cells
    write(tmp_path, config)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
                                "--configfile", "c.yaml"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    cells_dir = tmp_path / "results/cells"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(cells_dir.rglob("*.json"))) < 3:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)  # snakemake itself, mid-run, no cleanup
    process.wait()
    before = {p: p.read_text() for p in cells_dir.rglob("*.json")}
    assert 3 <= len(before) < 12, "the kill must land mid-run"
    for text in before.values():
        json.loads(text)  # no truncated record: writes are atomic
    time.sleep(2)  # let an orphaned cell job finish or die
    before = {p: p.read_text() for p in cells_dir.rglob("*.json")}
    snakemake(tmp_path, "--unlock", "--configfile", "c.yaml")  # a SIGKILLed Snakemake leaves its lock (by design)
    snakemake(tmp_path, "--configfile", "c.yaml")
    after = {p: p.read_text() for p in cells_dir.rglob("*.json")}
    assert len(after) == 12
    kept = [p for p in before if after[p] == before[p]]
    assert len(kept) >= len(before) - 1, "finished cells were recomputed"  # at most the one in flight
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--configfile", "c.yaml").stdout


BAD = [
    ({"seq_lens": [8, 256]}, "invalid config: seq_lens: 256 exceeds models.tiny-bert's max_position_embeddings (128)"),
    ({"models": {"m": {"pretrained": "/nonexistent/model"}}}, "invalid config: models.m.pretrained: '/nonexistent/model' is not a readable model directory"),
    ({"models": {"m": {"model_type": "no-such-type"}}}, "invalid config: models.m.model_type: unknown model type 'no-such-type'"),
    ({"backends": {"eager": {"engine": "tensorflow"}}}, "invalid config: backends.eager.engine"),
    ({"backends": {"eager": {"engine": "torch", "options": {"fast": True}}}}, "invalid config: backends.eager.options"),
    ({"precisions": ["fp8"]}, "invalid config: precisions[0]"),
    ({"batch_sizes": [0]}, "invalid config: batch_sizes[0]"),
    ({"seq_lens": [8.5]}, "invalid config: seq_lens[0]"),
    ({"baseline": {"backend": "ort", "precision": "fp32"}}, "invalid config: baseline.backend: 'ort'"),
    ({"backends": {"a b": {"engine": "torch"}}, "baseline": {"backend": "a b", "precision": "fp32"}}, "invalid config: backends"),
    ({"batch_sizes": [2.0]}, "invalid config: batch_sizes[0]: 2.0 is not of type 'integer'"),
    ({"models": {"m\n": {"model_type": "bert"}}}, "invalid config: models: 'm\\n' does not match"),
    ({"models": {"m": {"model_type": "bert", "overrides": {"hidden_layers": 2}}}}, "invalid config: models.m.overrides.hidden_layers: not a key"),
    # issue 29: the opset against the installed exporter and runtime, control characters, wildcards Snakemake refuses
    ({"backends": {"eager": {"engine": "torch"}, "ort": {"engine": "onnxruntime"}}, "onnx": {"opset": 99}},
     "invalid config: onnx.opset: 99 is not supported here: torch "),
    ({"compare": {"label": "run\x00a"}}, "invalid config: compare.label: 'run\\x00a' contains a control character"),
    ({"batch_sizes": [10 ** 30]}, "invalid config: batch_sizes[0]: 1000000000000000000000000000000 is greater than"),
    ({"backends": {"eager": {"engine": "torch"}, "e" + "0" * 30: {"engine": "torch"}}},
     "invalid config: backends.e000000000000000000000000000000: the name ends in '0' repeated 30 times"),
    ({"timing": {"budget_s": float("nan")}}, "invalid config: timing.budget_s: nan is not a finite number"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[b[1].split(": ")[1] for b in BAD])
def test_bad_input_stops_before_any_job_with_one_line(tmp_path, change, message):
    config = {**TINY, "backends": {"eager": {"engine": "torch"}}, **change}
    write(tmp_path, config)
    result = snakemake(tmp_path, "-n", "--configfile", "c.yaml", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    line = next((l for l in output.splitlines() if l.startswith("invalid config:")), None)
    assert line is not None and line.startswith(message), output[-1500:]
    assert not (tmp_path / "results").exists()


def test_an_alias_bomb_through_snakemake_is_refused_within_seconds(tmp_path):
    """Issue 29 item 2: twelve lines of nested aliases got no answer in 120 s."""
    write(tmp_path, {**TINY, "backends": {"eager": {"engine": "torch"}}})
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    (tmp_path / "c.yaml").write_text((tmp_path / "c.yaml").read_text() + "\n".join(lines) + "\n")
    started = time.monotonic()
    result = snakemake(tmp_path, "-n", "--configfile", "c.yaml", check=False)
    assert time.monotonic() - started < 60  # the Snakemake start included; the check itself takes milliseconds
    line = next((l for l in (result.stdout + result.stderr).splitlines() if l.startswith("invalid config:")), "")
    assert result.returncode != 0 and "YAML aliases expand to more than" in line, result.stderr[-1500:]


def test_a_whitespace_image_path_stops_no_run_without_containers(tmp_path):
    """Issue 29 item 11: Snakemake checked every rule's image even where none is used."""
    write(tmp_path, {**TINY, "backends": {"eager": {"engine": "torch"}}, "containers": {"cpu": "my image.sif"}})
    dry = snakemake(tmp_path, "-n", "--configfile", "c.yaml")
    assert "rule bench" in dry.stdout
    used = snakemake(tmp_path, "-n", "--configfile", "c.yaml", "--sdm", "apptainer", check=False)
    line = next((l for l in (used.stdout + used.stderr).splitlines() if l.startswith("invalid config:")), "")
    assert used.returncode != 0 and line.startswith("invalid config: containers.cpu: 'my image.sif' contains whitespace")


def test_unstable_cells_are_flagged_and_listed(tmp_path):
    flagged = cell.stability({"cv": 0.3}, {"sm_clock_mhz": [1980, 1410]}, {"max_cv": 0.1, "max_clock_change": 0.1})
    assert flagged["unstable"] and flagged["why"] == "cv 0.300 > 0.1; SM clock moved 1980→1410 MHz"
    steady = cell.stability({"cv": 0.01}, {"sm_clock_mhz": [1980, 1975]}, {"max_cv": 0.1, "max_clock_change": 0.1})
    assert not steady["unstable"] and steady["why"] is None
    record = records.new_record({"model": "m", "backend": "b", "engine": "torch", "precision": "fp32", "batch": 1,
                                 "seq_len": 8}, {}, None)
    record["stability"] = flagged
    records.write(records.finish(record, "ok"), tmp_path / "results/cells/m/b/fp32/b1_s8.json")
    listing = subprocess.run([str(BIN / "python"), "-m", "scripts.rerun_unstable", "--results",
                              str(tmp_path / "results"), "--list"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "b1_s8.json: cv 0.300 > 0.1" in listing.stdout


QUICK_TIMING = {"warmup_s": 0.01, "min_iters": 3, "max_iters": 20, "budget_s": 0.05, "rounds": 2}


def test_records_are_readable_like_every_other_output(tmp_path):
    path = tmp_path / "r.json"
    records.write({"schema_version": records.SCHEMA_VERSION}, path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~records._umask()  # not mkstemp's 0600


def test_unreadable_records_are_all_named(tmp_path):
    from infbench import tables

    good, cut, empty = tmp_path / "good.json", tmp_path / "cut.json", tmp_path / "empty.json"
    record = records.finish(records.new_record({"model": "m", "backend": "b", "engine": "torch", "precision": "fp32",
                                                "batch": 1, "seq_len": 8}, {}, None), "failed", "x")
    records.write(record, good)
    text = good.read_text()
    cut.write_text(text[: len(text) // 2])
    empty.write_text("")
    with pytest.raises(tables.CorruptRecords) as error:
        tables.load([good, cut, empty])
    assert error.value.paths == [cut, empty] and str(cut) in str(error.value) and "\n" not in str(error.value)


def test_a_failed_reference_becomes_every_cells_reason(tiny_run, tmp_path):
    """A reference job that fails (out of memory, any exception) writes its reason: the shape still runs and
    each of its cells says `failed: reference: <reason>`."""
    from test_engines import spec

    from infbench import models

    out = tmp_path / "b1_s8.npz"
    models.reference_request({"manifest": str(tmp_path / "no-model/manifest.json"), "batch": 1, "seq_len": 8,
                              "seed": 0, "device": "cpu", "out": str(out)})
    assert json.loads(out.with_suffix(".json").read_text())["status"] == "failed"
    cell_spec = spec(tiny_run, "eager", "torch")
    cell_spec.reference = out
    record = cell.run(cell_spec)
    assert record["status"] == "failed"
    assert record["reason"].startswith("reference: FileNotFoundError: ") and "manifest.json" in record["reason"]


def test_a_model_that_cannot_be_built_is_data_and_the_others_report(tmp_path):
    """A hub id that cannot be reached (offline): its build records why, every step and cell of that model
    fails with `model: <reason>`, and the other model's cells, the tables and the report complete."""
    config = config_with({"eager": {"engine": "torch"}, "ort": {"engine": "onnxruntime", "options": {"graph": "exported"}}},
                         seq_lens=[8], timing=QUICK_TIMING)
    config["models"] = {**config["models"], "gone": {"pretrained": "nobody/no-such-model"}}
    config["timing"] = QUICK_TIMING
    write(tmp_path, config)
    snakemake(tmp_path, "--configfile", "c.yaml")
    assert (tmp_path / "report/index.html").exists()
    got = {}
    for path in (tmp_path / "results/cells").rglob("*.json"):
        record = json.loads(path.read_text())
        got[(record["key"]["model"], record["key"]["backend"])] = record
    assert got[("tiny-bert", "eager")]["status"] == "ok" and got[("tiny-bert", "ort")]["status"] == "ok"
    for backend in ("eager", "ort"):
        record = got[("gone", backend)]
        assert record["status"] == "failed" and record["reason"].startswith("model: "), record["reason"]
        assert "\n" not in record["reason"]
    cells = pd.read_csv(tmp_path / "results/tables/cells.csv")
    assert set(cells["model"]) == {"tiny-bert", "gone"}


def test_no_gpu_and_corrupt_records_still_end_in_a_report(tmp_path):
    """`device: cuda` without a GPU: the references and the device peaks fail as data, every cell says why,
    and the report completes. Then a truncated record is recovered from its bundle; a truncated record whose
    bundle is truncated too is named, removed with it and re-measured by the next run."""
    config = config_with({"eager": {"engine": "torch"}}, device="cuda", batch_sizes=[1], seq_lens=[8, 16],
                         timing=QUICK_TIMING)
    config["timing"] = QUICK_TIMING
    write(tmp_path, config)
    snakemake(tmp_path, "--configfile", "c.yaml")
    assert (tmp_path / "report/index.html").exists()
    got = read_records(tmp_path)
    assert len(got) == 2 and all(r["status"] == "unavailable" for r in got.values()), got
    peaks = json.loads((tmp_path / "results/device/peaks.json").read_text())
    assert peaks["status"] == "failed" and "no CUDA device" in peaks["reason"]
    reference = tmp_path / "results/reference/tiny-bert/b1_s8.json"
    assert json.loads(reference.read_text())["status"] == "failed"
    record = tmp_path / "results/cells/tiny-bert/eager/fp32/b1_s8.json"
    bundle = tmp_path / "results/shapes/tiny-bert/b1_s8.json"
    intact = record.read_text()
    assert record.stat().st_mode & 0o044 == 0o044  # readable like every other output

    def truncate(path):
        text = path.read_text()
        path.write_text(text[: len(text) // 2])

    truncate(record)  # newer than the tables: the next run aggregates again
    snakemake(tmp_path, "--configfile", "c.yaml")
    assert record.read_text() == intact  # re-split from the intact bundle; the run completed
    assert (tmp_path / "report/index.html").exists()
    truncate(bundle)
    time.sleep(0.05)
    truncate(record)  # the record newest: aggregation finds it, not the record's own rule
    failed = snakemake(tmp_path, "--configfile", "c.yaml", check=False)
    assert failed.returncode != 0
    log = (tmp_path / "logs/aggregate.log").read_text()
    assert "aggregate: corrupt record(s) results/cells/tiny-bert/eager/fp32/b1_s8.json" in log
    assert "run snakemake again" in log
    # issue 29 item 10: what to do is on the screen too, not only in the log
    assert "logs/aggregate.log: aggregate: corrupt record(s)" in failed.stderr and "run snakemake again" in failed.stderr
    assert not record.exists() and not bundle.exists() and not (tmp_path / "report/index.html").exists()
    snakemake(tmp_path, "--configfile", "c.yaml")  # the shape is measured again, the report rebuilt
    assert json.loads(record.read_text())["status"] == "unavailable"
    assert (tmp_path / "report/index.html").exists()
    truncate(bundle)  # a corrupt shape bundle alone: its records' rule finds it
    failed = snakemake(tmp_path, "--configfile", "c.yaml", check=False)
    assert failed.returncode != 0 and not bundle.exists()
    line = next(l for l in failed.stderr.splitlines() if l.startswith("logs/cells/tiny-bert/eager/fp32/b1_s8.log: "))
    assert line.endswith("removed; run snakemake again to re-measure this shape"), line
    snakemake(tmp_path, "--configfile", "c.yaml")
    assert json.loads(record.read_text())["status"] == "unavailable"
    assert (tmp_path / "report/index.html").exists()


def _processes(workdir: Path, marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace") and \
                    os.readlink(proc / "cwd") == str(workdir):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_killed_runs_orphan_never_times_beside_the_rerun(tmp_path):
    """kill -9 of Snakemake leaves its shape job timing; the rerun (unlock, run) must wait for it, never time
    beside it: the CPU's timing lease is held by the orphan until its session ends."""
    from datetime import datetime

    backends = {"eager": {"engine": "torch"}, "ort": {"engine": "onnxruntime", "options": {"graph": "exported"}}}
    config = config_with(backends, batch_sizes=[1, 2], seq_lens=[8])
    config["timing"] = {**config["timing"], "budget_s": 2.5, "target_ci_rel_width": 0.0001, "rounds": 3}
    write(tmp_path, config)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--cores", "2", "--configfile", "c.yaml"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    progress = []
    while time.monotonic() < deadline and not progress:
        progress = [p for p in (tmp_path / "results/shapes").rglob("*.progress") if '"round"' in p.read_text()] \
            if (tmp_path / "results/shapes").exists() else []
        time.sleep(0.1)
    assert progress, "no shape session started timing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.time()
    orphans = _processes(tmp_path, "scripts.bench_shape")
    assert orphans, "the kill must leave the shape job running (as it does)"
    snakemake(tmp_path, "--unlock", "--configfile", "c.yaml")
    rerun = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    # the orphan releases the CPU timing lease when its session has ended (it then writes its bundle and
    # exits); the lease file names its holder, so a rerun job taking it shows the moment of the release
    lease = tmp_path / "results/.locks/cpu.lock"

    def holder():
        try:
            return int(lease.read_text().strip())
        except (OSError, ValueError):
            return None

    while any(Path(f"/proc/{pid}").exists() for pid in orphans) and holder() in (None, *orphans):
        time.sleep(0.02)
    orphans_ended = time.time()  # the orphan's timing is over: released the lease, or gone
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    starts = []
    for path in (tmp_path / "results/cells").rglob("*.json"):
        for round_ in (json.loads(path.read_text()).get("timing") or {}).get("rounds", []):
            started = datetime.fromisoformat(round_["started_at"]).timestamp()
            if started >= killed_at - 1:
                starts.append(started)
    assert starts, "the rerun measured nothing"
    assert min(starts) >= orphans_ended - 1.5, (min(starts), orphans_ended)  # seconds resolution
    # no worker lingers after the run: a server whose runs have all ended exits within its one-second check
    # (infbench.worker), far inside IDLE_S; CI once saw one still exiting as the rerun returned
    gone_by = time.monotonic() + 5
    while _processes(tmp_path, "infbench.worker") and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not _processes(tmp_path, "infbench.worker")


def test_duplicate_keys_and_command_line_values_through_snakemake(tmp_path):
    """Snakemake reads config files itself (a duplicate key silently merged) and parses `--config` lists as
    strings: the run refuses the one and reads the other as YAML would."""
    write(tmp_path, {**TINY, "backends": {"eager": {"engine": "torch"}}})
    text = (tmp_path / "c.yaml").read_text()
    (tmp_path / "dup.yaml").write_text(text + "device: cuda\n")
    result = snakemake(tmp_path, "-n", "--configfile", "dup.yaml", check=False)
    line = next((l for l in (result.stdout + result.stderr).splitlines() if l.startswith("invalid config:")), "")
    assert result.returncode != 0 and line.startswith("invalid config: device: duplicate key"), result.stderr[-1500:]
    dry = snakemake(tmp_path, "-n", "--configfile", "c.yaml", "--config", "batch_sizes=[1,2]", "seq_lens=[8]")
    assert "results/shapes/tiny-bert/b2_s8.json" in dry.stdout and "b2_s16" not in dry.stdout
    assert not (tmp_path / "results").exists()
    write(tmp_path, {**TINY, "backends": {"eager": {"engine": "torch"}},
                     "models": {**TINY["models"], "other-bert": TINY["models"]["tiny-bert"]}})
    dry = snakemake(tmp_path, "-n", "--configfile", "c.yaml", "--config", "only={models: [other-bert]}")
    assert "results/shapes/other-bert/" in dry.stdout and "results/shapes/tiny-bert/" not in dry.stdout
