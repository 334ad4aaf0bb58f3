"""Device leases (the multi-GPU path), on a CPU host with a faked device count: jobs never share a device,
every device is used, and a killed holder frees its device."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake

from infbench import devices


def hold(lock_dir: str, seconds: float, queue) -> None:
    with devices.lease(Path(lock_dir), poll_s=0.01) as device:
        start = time.monotonic()
        time.sleep(seconds)
        queue.put((device, start, time.monotonic()))


def test_leases_are_exclusive_and_use_every_device(tmp_path, monkeypatch):
    monkeypatch.setenv("INFBENCH_FAKE_GPUS", "2")
    queue = multiprocessing.get_context("fork").Queue()
    workers = [multiprocessing.get_context("fork").Process(target=hold, args=(str(tmp_path), 0.3, queue))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    spans = [queue.get(timeout=5) for _ in workers]
    assert {device for device, _, _ in spans} == {"0", "1"}
    for device in ("0", "1"):
        mine = sorted((s, e) for d, s, e in spans if d == device)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(mine, mine[1:])), mine
    # both devices busy at once: the leases run jobs in parallel, not one after the other
    zero = [(s, e) for d, s, e in spans if d == "0"]
    one = [(s, e) for d, s, e in spans if d == "1"]
    assert any(s0 < e1 and s1 < e0 for s0, e0 in zero for s1, e1 in one)


def test_a_killed_holder_frees_its_device(tmp_path, monkeypatch):
    monkeypatch.setenv("INFBENCH_FAKE_GPUS", "1")
    queue = multiprocessing.get_context("fork").Queue()
    holder = multiprocessing.get_context("fork").Process(target=hold, args=(str(tmp_path), 60, queue))
    holder.start()
    time.sleep(0.5)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with devices.lease(tmp_path, poll_s=0.01) as device:
        assert device == "0"


def test_cuda_visible_devices_restricts_the_devices(monkeypatch):
    monkeypatch.delenv("INFBENCH_FAKE_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert devices.physical_ids() == ["2", "5"] and devices.count() == 2


def test_gpu_sessions_prepare_side_by_side_and_never_time_beside_each_other(tiny_run, tmp_path):
    """The workflow on a 'GPU host' with two faked devices: shape sessions run at once, spread over both
    devices, and no two timing windows of any sessions overlap (each round holds the host's lock)."""
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config.pop("generation", None)  # forward cells only here
    config.update(precisions=["fp32"], batch_sizes=[1, 2, 3], seq_lens=[8, 16],
                  backends={"eager": {"engine": "torch"}, "ort": {"engine": "onnxruntime"}})
    config["timing"].update(rounds=3, round_spacing_s=0.5)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    os.environ["INFBENCH_FAKE_GPUS"] = "2"
    try:
        snakemake(tmp_path, "--configfile", "c.yaml", "--cores", "4",
                  *[f"results/cells/tiny-bert/{b}/fp32/b{n}_s{s}.json" for b in ("eager", "ort")
                    for n in (1, 2, 3) for s in (8, 16)])
    finally:
        del os.environ["INFBENCH_FAKE_GPUS"]
    sessions: dict[str, dict] = {}
    windows = []
    count = 0
    for path in (tmp_path / "results/cells").rglob("*.json"):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", record["reason"]
        assert record["device"]["threads"] == 1  # a session is one device's worth, not the whole host
        count += 1
        session = sessions.setdefault(record["timing"]["session"], {"lease": record["device"]["lease"], "cost": record["cost"]})
        assert session["lease"] == record["device"]["lease"]
        for r in record["timing"]["rounds"]:
            windows.append((r["started_unix"], r["started_unix"] + r["window"]["warmup_seconds"]
                            + r["window"]["loop_seconds"], record["timing"]["session"]))
    assert count == 12 and len(sessions) == 6 and {s["lease"] for s in sessions.values()} == {"0", "1"}
    windows.sort()
    for (_, end, one), (start, _, other) in zip(windows, windows[1:]):
        assert one == other or end <= start + 1e-3, (one, end, other, start)
    # they did run side by side: some session waited for another's rounds or preparation
    assert any(s["cost"]["host_wait_s"] > 0 for s in sessions.values())


def hold_host(lock_dir: str, mode: str, seconds: float, queue) -> None:
    with (devices.host_exclusive if mode == "ex" else devices.host_shared)("cuda", lock_dir=Path(lock_dir)):
        start = time.monotonic()
        time.sleep(seconds)
        queue.put((mode, start, time.monotonic()))


def test_host_lock_keeps_rounds_apart_from_each_other_and_from_heavy_work(tmp_path, monkeypatch):
    """Heavy work (shared) overlaps other heavy work; a round (exclusive) overlaps nothing."""
    monkeypatch.setenv("INFBENCH_FAKE_GPUS", "1")
    monkeypatch.setenv(devices.LOCAL_RUN, "1")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    modes = ["sh", "sh", "ex", "sh", "ex", "ex", "sh"]
    workers = [context.Process(target=hold_host, args=(str(tmp_path), mode, 0.3, queue)) for mode in modes]
    for worker in workers:
        worker.start()
        time.sleep(0.02)
    for worker in workers:
        worker.join(30)
    spans = [queue.get(timeout=5) for _ in workers]
    for i, (mode, start, end) in enumerate(spans):
        for other, s2, e2 in spans[i + 1:]:
            overlap = start < e2 - 1e-3 and s2 < end - 1e-3
            if "ex" in (mode, other):
                assert not overlap, spans
    shared = [(s, e) for m, s, e in spans if m == "sh"]
    assert any(s1 < e2 and s2 < e1 for i, (s1, e1) in enumerate(shared) for s2, e2 in shared[i + 1:]), spans


def test_host_lock_is_on_for_local_runs_only_and_never_upgraded(tmp_path, monkeypatch):
    monkeypatch.setenv("INFBENCH_FAKE_GPUS", "1")
    monkeypatch.delenv(devices.LOCAL_RUN, raising=False)
    assert not devices.gated("cuda")  # a cluster job (or no workflow): its allocation is its own
    monkeypatch.setenv(devices.LOCAL_RUN, "1")
    assert devices.gated("cuda")
    with devices.host_exclusive("cuda", lock_dir=tmp_path), devices.host_exclusive("cuda", lock_dir=tmp_path):
        pass  # re-entrant
    with devices.host_shared("cuda", lock_dir=tmp_path):
        with pytest.raises(RuntimeError, match="exclusive requested inside a shared hold"):
            with devices.host_exclusive("cuda", lock_dir=tmp_path):
                pass
    monkeypatch.delenv("INFBENCH_FAKE_GPUS")
    assert not devices.gated("cpu")


def test_another_thread_waits_for_the_autotune_lock_and_the_wait_hooks_fire(tmp_path, monkeypatch):
    """Kernel benchmarks of two compilers -- other processes, or other threads of this one -- never overlap,
    and a wait pauses the caller's watchdog (the hooks a shape session installs)."""
    import threading

    monkeypatch.setenv("INFBENCH_FAKE_GPUS", "1")
    monkeypatch.setenv(devices.LOCAL_RUN, "1")
    events = []
    devices.set_wait_hooks(lambda: events.append("pause"), lambda: events.append("resume"))
    try:
        inside = threading.Event()

        def other():
            with devices.autotune_exclusive(lock_dir=tmp_path):
                events.append("other in")
                inside.set()
                time.sleep(0.3)
                events.append("other out")

        thread = threading.Thread(target=other)
        thread.start()
        inside.wait(5)
        with devices.autotune_exclusive(lock_dir=tmp_path):
            events.append("main in")
        thread.join(5)
    finally:
        devices.set_wait_hooks(lambda: None, lambda: None)
    assert events == ["other in", "pause", "other out", "resume", "main in"]


def place(lock_dir: str, seconds: float, queue) -> None:
    with devices.placed("cuda", lock_dir=Path(lock_dir)) as gpu:
        queue.put(gpu)
        time.sleep(seconds)


def test_sessions_spread_over_devices_and_a_dead_session_frees_its_place(tmp_path, monkeypatch):
    monkeypatch.setenv("INFBENCH_FAKE_GPUS", "2")
    monkeypatch.setenv(devices.LOCAL_RUN, "1")
    for name in ("CUDA_VISIBLE_DEVICES", "INFBENCH_GPU"):  # placed() sets them: restore after the test
        monkeypatch.setenv(name, "")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=place, args=(str(tmp_path), 2.0, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    got = sorted(queue.get(timeout=10) for _ in workers)
    assert got == ["0", "0", "1", "1"]
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
    survivor = context.Process(target=place, args=(str(tmp_path), 2.0, queue))
    survivor.start()
    assert queue.get(timeout=10) == "0"  # the killed sessions no longer count
    with devices.placed("cuda", lock_dir=tmp_path) as gpu:
        assert gpu == "1"
    survivor.join(10)


def hold_cpu(lock_dir: str, seconds: float, queue) -> None:
    with devices.cpu_lease(Path(lock_dir)):
        queue.put(("held", time.monotonic()))
        time.sleep(seconds)
        # stamped while still held: a waiter's acquisition can only come later (stamping after the release
        # raced with a waiter that got the lease first on a loaded machine)
        queue.put(("released", time.monotonic()))


def test_cpu_timing_waits_for_a_live_holder_of_the_cpu_lease(tmp_path, monkeypatch):
    """Timing on the CPU holds the CPU's lease: a job orphaned by a kill -9 of its Snakemake keeps it, so a
    rerun's timing waits for it instead of running beside it (and a killed holder frees it)."""
    monkeypatch.delenv("INFBENCH_FAKE_GPUS", raising=False)
    monkeypatch.chdir(tmp_path)  # leased() uses results/.locks of the working directory
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    holder = context.Process(target=hold_cpu, args=(str(tmp_path / "results/.locks"), 1.0, queue))
    holder.start()
    assert queue.get(timeout=10)[0] == "held"
    with devices.leased(False, cpu=False):  # a CPU job that times nothing (a reference) does not wait
        assert holder.is_alive()
    with devices.leased(False) as device:  # a CPU timing job waits
        got = time.monotonic()
        assert device is None
    kind, released = queue.get(timeout=10)
    assert kind == "released" and got >= released
    holder.join(10)
    killed = context.Process(target=hold_cpu, args=(str(tmp_path / "results/.locks"), 60, queue))
    killed.start()
    assert queue.get(timeout=10)[0] == "held"
    os.kill(killed.pid, signal.SIGKILL)
    killed.join()
    start = time.monotonic()
    with devices.leased(False):
        assert time.monotonic() - start < 5
