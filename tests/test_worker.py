"""The cell worker: same records as a fresh process per cell, imports paid once, never stale code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from infbench import worker


def bench_cell(run_dir: Path, out: Path, use_worker: bool, backend="ort", engine="onnxruntime", graph="exported"):
    """A shape job of one cell, run as the workflow runs it; its record."""
    cell = {"key": {"model": "tiny-bert", "backend": backend, "engine": engine, "precision": "fp32", "batch": 1,
                    "seq_len": 8},
            "options": {"graph": graph} if engine == "onnxruntime" else {}, "tolerance": 1e-4}
    if engine == "onnxruntime":
        cell["graph"] = f"results/onnx/tiny-bert/{graph}.onnx"
    shape = {"device": "cpu", "cells": [cell],
             "timing": {"warmup_s": 0.0, "min_iters": 3, "max_iters": 10, "budget_s": 0.1, "target_ci_rel_width": 0.5,
                        "rounds": 2}}
    args = [sys.executable, "-m", "scripts.bench_shape", "--shape", json.dumps(shape),
            "--manifest", "results/models/tiny-bert/manifest.json",
            "--reference", "results/reference/tiny-bert/b1_s8.npz", "--threads", "1",
            "--log", str(out.with_suffix(".log")), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "INFBENCH_WORKER": "1" if use_worker else "0"}
    subprocess.run(args, cwd=run_dir, env=env, check=True, timeout=300)
    (record,) = json.loads(out.read_text())["records"]
    return record


def test_worker_and_fresh_process_write_the_same_kind_of_record(tiny_run, tmp_path):
    try:
        fresh = bench_cell(tiny_run, tmp_path / "fresh.json", use_worker=False)
        first = bench_cell(tiny_run, tmp_path / "first.json", use_worker=True, backend="eager", engine="torch")
        second = bench_cell(tiny_run, tmp_path / "second.json", use_worker=True)
    finally:
        worker.shutdown_all(tiny_run / worker.WORKER_DIR)
    assert fresh["status"] == first["status"] == second["status"] == "ok"
    assert "worker" not in fresh["cost"]
    assert first["cost"]["worker"]["server_pid"] == second["cost"]["worker"]["server_pid"]  # one server, reused
    assert second["cost"]["worker"]["served"] == first["cost"]["worker"]["served"] + 1
    assert set(fresh) == set(second)
    assert "ok" in (tmp_path / "second.log").read_text()  # the child logs into the job's log


def test_fingerprint_follows_the_source(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(worker, "PACKAGE", package)
    before = worker.fingerprint()
    assert worker.fingerprint() == before
    (package / "a.py").write_text("x = 22\n")
    assert worker.fingerprint() != before
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert worker.fingerprint() != before


def test_worker_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("INFBENCH_WORKER", "0")
    assert not worker.enabled()
    monkeypatch.delenv("INFBENCH_WORKER")
    assert worker.enabled()


def test_shutdown_removes_dead_sockets(tmp_path):
    dead = tmp_path / "cell-dead.sock"
    dead.write_text("")
    worker.shutdown_all(tmp_path)
    assert not dead.exists()


def test_an_unusable_worker_falls_back_to_a_fresh_process(tiny_run, tmp_path, monkeypatch):
    """A server whose CUDA probe failed says so on ping; the cell then runs in the job's own interpreter."""
    import threading

    monkeypatch.chdir(tiny_run)
    path = tmp_path / "cell-x.sock"
    monkeypatch.setattr(worker, "socket_path", lambda: path)
    server = threading.Thread(target=worker.serve, args=(path, None, "a forked child cannot initialise CUDA"))
    server.start()
    try:
        for _ in range(100):
            if path.exists():
                break
            import time

            time.sleep(0.05)
        with pytest.raises(worker.Unusable, match="cannot initialise CUDA"):
            worker.run({"out": "x"})
    finally:
        worker.shutdown_all(tmp_path)
        server.join(timeout=10)
    assert not server.is_alive()
