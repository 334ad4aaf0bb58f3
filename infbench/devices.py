"""Who runs where, and beside whom: device leases, the host's timing lock, the placement of shape sessions.

- **Leases** (``lease``/``leased``): one exclusive flock per device (``results/.locks/gpu<i>.lock``, released
  by the kernel when the process dies, even on SIGKILL), taken for a whole job where jobs get their own
  allocation (a SLURM job) and ``CUDA_VISIBLE_DEVICES`` set to it; on the CPU, the CPU's timing lease.
- **The host lock** (``host_shared``/``host_exclusive``, below): where Snakemake runs the jobs on its own
  host, timing rounds hold it exclusively and all heavy work shared, so shape sessions prepare side by side
  and nothing heavy ever runs beside a timed window; ``autotune_exclusive`` keeps compilers' kernel
  benchmarks apart. ``placed`` puts a session on the GPU with the fewest live sessions.

Why not Snakemake resources alone: ``resources: gpu=1`` bounds how many jobs run, not *which* GPU a job
gets, and it cannot let preparation overlap while keeping rounds apart.

``INFBENCH_FAKE_GPUS=N`` pretends N devices exist (tests of the GPU paths on a CPU host).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
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


# --- Who may run beside a timing round (one GPU host, local execution) ---------------------------------
# Measured on the H100 host: a busy CPU beside timing moves launch-bound cells 8-30 %, and 9 inductor compiles
# in parallel processes take 39 s against ~165 s one after another. So preparation runs in parallel and timing
# runs alone: every timing round holds the host's lock exclusively, and all heavy work -- a shape session's
# preparation (loads, compiles, engine deserialisation, CUDA-graph captures), model builds, ONNX export and
# fusion, AOTInductor compiles, fp64 references -- holds it shared. Shape sessions therefore prepare side by
# side, then take turns round by round (each round a shape's cells interleaved), so one shape's rounds are
# spaced by the others' instead of by idling. On a cluster each job has its own node share and the lock is
# off (a lock on a shared disk would stop rounds on other nodes); on the CPU a timing job holds every core.


LOCAL_RUN = "INFBENCH_LOCAL_RUN"  # set by the Snakefile (onstart) when Snakemake runs the jobs on its own host


def gated(device: str) -> bool:
    """Is this job's timing kept apart from heavy work by the host lock? On a GPU (or faked GPUs) when the
    workflow runs its jobs on this host -- also inside a SLURM allocation (salloc), but not as SLURM jobs."""
    return scheduled(device) and os.environ.get(LOCAL_RUN) == "1"


class _HostLock:
    """The host's timing lock: an flock (freed by the kernel if its holder dies, even on SIGKILL).

    Re-entrant per thread (inductor's benchmark helpers nest), never upgraded (a nested exclusive request
    inside a shared hold is a bug: it raises). Another thread of the same process opens its own handle, so
    it waits like another process would. A wait calls ``on_wait`` (or the process's wait hooks, see
    ``set_wait_hooks``) when it begins and the resume hook when it ends."""

    def __init__(self, name: str):
        self.name = name
        self.local = threading.local()
        self.waited_s = 0.0  # this process's time blocked on it (a session's cost report keeps it apart)

    @contextlib.contextmanager
    def held(self, mode: int, on_wait=None, lock_dir: Path | None = None):
        depth, held_mode = getattr(self.local, "depth", 0), getattr(self.local, "mode", None)
        if depth:
            if mode == fcntl.LOCK_EX and held_mode != fcntl.LOCK_EX:
                raise RuntimeError(f"{self.name}: exclusive requested inside a shared hold")
            self.local.depth = depth + 1
            try:
                yield
            finally:
                self.local.depth -= 1
            return
        lock_dir = lock_dir or LOCK_DIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock_dir / self.name, "a+")
        try:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                (on_wait or _HOOKS["pause"])()
                start = time.perf_counter()
                fcntl.flock(handle, mode)
                self.waited_s += time.perf_counter() - start
                _HOOKS["resume"]()
            self.local.depth, self.local.mode = 1, mode
            yield
        finally:
            self.local.depth, self.local.mode = 0, None
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


_HOOKS = {"pause": lambda: None, "resume": lambda: None}


def set_wait_hooks(pause, resume) -> None:
    """What a wait for a host lock does to the caller's watchdog (a shape session's progress): a wait is
    others' work, not a step of this process running long (infbench.cell.Progress)."""
    _HOOKS.update(pause=pause, resume=resume)


_HOST = _HostLock("host.lock")
_AUTOTUNE = _HostLock("autotune.lock")


def host_waited_s() -> float:
    """Seconds this process spent waiting for the host lock (others' rounds or preparation)."""
    return _HOST.waited_s


def host_shared(device: str, on_wait=None, lock_dir: Path | None = None):
    """Heavy work (preparation of any kind): beside other heavy work, never beside a timing round."""
    return _HOST.held(fcntl.LOCK_SH, on_wait, lock_dir) if gated(device) else contextlib.nullcontext()


def host_exclusive(device: str, on_wait=None, lock_dir: Path | None = None):
    """A timing round (or a profiled pass, or the device's peak rates): nothing heavy runs meanwhile, and no
    other round on this host (a launch-bound cell's latency is host time: a round on another GPU takes some)."""
    return _HOST.held(fcntl.LOCK_EX, on_wait, lock_dir) if gated(device) else contextlib.nullcontext()


def autotune_exclusive(lock_dir: Path | None = None):
    """One kernel benchmark (inductor's autotuning, a TensorRT build's tactic timing) at a time on this
    host: compilers running in parallel processes would otherwise time their candidates on a shared GPU,
    and pick by skewed times. Off where the host lock is (a cluster: one job per allocation)."""
    gpus = "cuda" if count() else "cpu"
    return _AUTOTUNE.held(fcntl.LOCK_EX, None, lock_dir) if gated(gpus) else contextlib.nullcontext()


@contextlib.contextmanager
def placed(device: str, timing: bool = True, lock_dir: Path | None = None):
    """The device a job works on. Locally on a GPU host (``gated``): the GPU with the fewest live sessions
    (memory, not time, is what they share: the host lock keeps their rounds apart), made this process's only
    visible GPU. On a cluster: an exclusive lease of one device for the job (``leased``). On the CPU: the
    CPU's timing lease when the job times (``timing``). Yields the device id, or None."""
    if not gated(device):
        with leased(scheduled(device), cpu=timing) as gpu:
            yield gpu
        return
    ids = physical_ids()
    if not ids:
        yield None
        return
    lock_dir = lock_dir or LOCK_DIR
    sessions = lock_dir / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "placing.lock", "a+") as placing:
        fcntl.flock(placing, fcntl.LOCK_EX)  # count and claim in one step: two jobs starting together spread
        live = {gpu: 0 for gpu in ids}
        for path in sessions.glob("gpu*-*"):
            gpu = path.name[3:].rsplit("-", 1)[0]
            with open(path, "a+") as other:
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live[gpu] = live.get(gpu, 0) + 1
                    continue
                path.unlink(missing_ok=True)  # its holder died
        gpu = min(ids, key=lambda i: (live.get(i, 0), ids.index(i)))
        mine = open(sessions / f"gpu{gpu}-{os.getpid()}", "a+")
        fcntl.flock(mine, fcntl.LOCK_EX)
    try:
        os.environ.update(CUDA_VISIBLE_DEVICES=gpu, INFBENCH_GPU=gpu)
        yield gpu
    finally:
        Path(mine.name).unlink(missing_ok=True)
        fcntl.flock(mine, fcntl.LOCK_UN)
        mine.close()


def heavy(lock_dir: Path | None = None):
    """Heavy work of a job that knows no device (model build, ONNX export / fusion / conversion, engine and
    AOTInductor builds): on a host with GPUs it holds the host lock shared, so no timing round runs beside it."""
    return host_shared("cuda" if count() else "cpu", lock_dir=lock_dir)
