"""The cell worker: same records as a fresh process per cell, imports paid once, never stale code."""

import json
import os
import subprocess
import sys
import time
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
            time.sleep(0.05)
        with pytest.raises(worker.Unusable, match="cannot initialise CUDA"):
            worker.run({"out": "x"})
    finally:
        worker.shutdown_all(tmp_path)
        server.join(timeout=10)
    assert not server.is_alive()


def test_concurrent_jobs_start_one_server(tmp_path, monkeypatch):
    """Jobs that start at once (references, the first shapes) share one server: the start lock."""
    import threading

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    replies = []

    def job():
        # a request the child fails on at once (no cells): only the server that answered matters here
        replies.append(worker.run({"job": "shape", "log": str(tmp_path / "job.log")}))

    try:
        threads = [threading.Thread(target=job) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert len(replies) == 3
        assert len({reply["server_pid"] for reply in replies}) == 1, replies
        assert len(list((tmp_path / worker.WORKER_DIR).glob("*.sock"))) == 1
    finally:
        worker.shutdown_all(tmp_path / worker.WORKER_DIR)


def _serve_in_thread(path: Path, handler):
    import threading

    server = threading.Thread(target=worker.serve, args=(path, handler), daemon=True)
    server.start()
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def _sleeping_handler(request):
    Path(request["pid_file"]).write_text(str(os.getpid()))
    time.sleep(120)


def test_a_child_whose_job_is_gone_is_killed(tmp_path):
    """A job killed while its child times (kill -9 of its Snakemake and of the job): the child goes too."""
    path = tmp_path / "w.sock"
    server = _serve_in_thread(path, _sleeping_handler)
    pid_file = tmp_path / "child.pid"
    request = {"cwd": str(tmp_path), "env": dict(os.environ), "log": str(tmp_path / "c.log"), "pid_file": str(pid_file)}
    job = subprocess.Popen([sys.executable, "-c", "import json, sys; from pathlib import Path; "
                            "from infbench import worker; worker._send(Path(sys.argv[1]), json.loads(sys.argv[2]), None)",
                            str(path), json.dumps(request)], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    job.kill()  # the job dies (SIGKILL: no cleanup of its own)
    job.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()  # killed and reaped
    worker._send(path, {"shutdown": True}, timeout=5)
    server.join(10)


def test_the_server_ends_with_the_runs_it_served(tmp_path):
    """No server lingers after its Snakemake is gone, even by kill -9 (no onerror handler runs then)."""
    path = tmp_path / "w.sock"
    server = _serve_in_thread(path, lambda request: None)
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    reply = worker._send(path, {"cwd": str(tmp_path), "env": dict(os.environ), "log": str(tmp_path / "c.log"),
                                "run_pid": run.pid}, timeout=30)
    assert reply["exit"] == 0
    assert server.is_alive()  # its run is still there
    run.wait()
    server.join(10)
    assert not server.is_alive() and not path.exists()
