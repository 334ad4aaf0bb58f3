"""Which GPU a job runs on: one exclusive lease per device, so that two timing jobs never share a GPU.

Why leases and not a counter: Snakemake's ``resources: gpu=1`` with ``--resources gpu=N`` bounds how many
GPU jobs run at once, but it does not say *which* GPU a job gets. Each job therefore takes the first free
device lock (an ``flock`` on ``results/.locks/gpu<i>.lock``, released by the kernel when the process dies,
even on SIGKILL) and sets ``CUDA_VISIBLE_DEVICES`` to that device for the process that runs the cell. With
``--resources gpu=N`` a free lock always exists; without it, extra jobs wait for one, so a wrong
``--resources`` can cost time but never a shared GPU.

``INFBENCH_FAKE_GPUS=N`` pretends N devices exist (tests of the multi-GPU path on a CPU host).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

LOCK_DIR = Path("results/.locks")


def count() -> int:
    """GPUs visible to the driver (or faked), without initialising CUDA."""
    fake = os.environ.get("INFBENCH_FAKE_GPUS")
    if fake:
        return int(fake)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def scheduled(device: str) -> bool:
    """Do timing jobs of this run take device leases (a GPU run, or a test's faked GPUs)?"""
    return device == "cuda" or bool(os.environ.get("INFBENCH_FAKE_GPUS"))


def physical_ids() -> list[str]:
    """Device ids as CUDA_VISIBLE_DEVICES names them for this host (honouring an outer restriction)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not os.environ.get("INFBENCH_FAKE_GPUS"):
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(count())]


@contextlib.contextmanager
def leased(wanted: bool, cpu: bool = True):
    """Where ``wanted``: hold a device and make it this process's only visible GPU (set before anything
    initialises CUDA; the worker's child takes this environment). Yields the device id, or None.

    Otherwise (timing on the CPU) hold the CPU's timing lease unless ``cpu`` is False: Snakemake's
    timing_slots keep one run's timing jobs apart, this keeps runs apart (a job orphaned by a kill -9 of its
    Snakemake holds it until its session ends, so a rerun waits instead of timing beside it)."""
    if not wanted:
        if not cpu:
            yield None
            return
        with cpu_lease():
            yield None
        return
    with lease() as device:
        if device is not None:
            os.environ.update(CUDA_VISIBLE_DEVICES=device, INFBENCH_GPU=device)
        yield device


@contextlib.contextmanager
def cpu_lease(lock_dir: Path = LOCK_DIR):
    """Hold the CPU's timing lease (blocking): an flock the kernel frees when its holder dies."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "cpu.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            print(f"waiting for the CPU timing lease ({lock_dir / 'cpu.lock'}, held by pid "
                  f"{handle.read().strip() or '?'})", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def lease(lock_dir: Path = LOCK_DIR, poll_s: float = 0.2):
    """Hold one device exclusively for the duration; yields its id (a CUDA_VISIBLE_DEVICES value)."""
    ids = physical_ids()
    if not ids:
        yield None
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for device in ids:
            handle = open(lock_dir / f"gpu{device}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield device
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)
