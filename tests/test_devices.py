"""Device leases (the multi-GPU path), on a CPU host with a faked device count: jobs never share a device,
every device is used, and a killed holder frees its device."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

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


def test_gpu_cells_spread_over_fake_devices_without_sharing(tiny_run, tmp_path):
    """The workflow on a 'GPU host' with two faked devices: each cell job takes a lease and records it."""
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config.update(precisions=["fp32"], batch_sizes=[1, 2, 3], seq_lens=[8, 16],
                  backends={"eager": {"engine": "torch"}, "ort": {"engine": "onnxruntime"}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    os.environ["INFBENCH_FAKE_GPUS"] = "2"
    try:
        snakemake(tmp_path, "--configfile", "c.yaml", "--resources", "gpu=2", "--cores", "4",
                  *[f"results/cells/tiny-bert/{b}/fp32/b{n}_s{s}.json" for b in ("eager", "ort")
                    for n in (1, 2, 3) for s in (8, 16)])
    finally:
        del os.environ["INFBENCH_FAKE_GPUS"]
    sessions: dict[str, tuple] = {}  # a shape job (its cells share a session, a lease and a time span)
    count = 0
    for path in (tmp_path / "results/cells").rglob("*.json"):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", record["reason"]
        assert record["device"]["threads"] == 1  # a leased job is one device's worth, not the whole host
        count += 1
        lease, start, end = sessions.get(record["timing"]["session"], (record["device"]["lease"], "~", ""))
        assert lease == record["device"]["lease"]
        sessions[record["timing"]["session"]] = (lease, min(start, record["started_at"]), max(end, record["finished_at"]))
    spans = list(sessions.values())
    assert count == 12 and len(spans) == 6 and {lease for lease, _, _ in spans} == {"0", "1"}
    for lease in ("0", "1"):
        mine = sorted((start, end) for d, start, end in spans if d == lease)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(mine, mine[1:])), mine


def hold_cpu(lock_dir: str, seconds: float, queue) -> None:
    with devices.cpu_lease(Path(lock_dir)):
        queue.put(("held", time.monotonic()))
        time.sleep(seconds)
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
