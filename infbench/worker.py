"""A fork server for cell jobs: imports paid once per run, one fresh process per cell all the same.

Why: a cell job that imports torch + transformers pays seconds before it measures anything (3.7 s on a
2-core CPU here, ~15 s on the GPU host we measured), and a GPU matrix has hundreds of cells. The first cell
job of a run starts this server, which imports the heavy libraries and then forks one child per cell. The
child is a new process as before (its own CUDA context, its own crash), but it starts with the imports done.

Safety rules this file keeps:
- the server never initialises CUDA nor runs a tensor op, so forking is safe; it is single-threaded and
  serves requests concurrently by forking one child per request (jobs on different GPUs run at once);
- the socket name is derived from the Python executable and the library's source files, so edited code or
  another environment gets a new server rather than stale imports;
- the child takes the client's environment and working directory, and writes its record itself; the client
  writes a ``failed`` record if the child dies without one;
- an idle server exits after ``IDLE_S``, or as soon as it is idle and every Snakemake it served has died
  (a ``kill -9`` leaves no handler to stop it); Snakemake's onsuccess/onerror handlers stop it at the end of
  a run;
- a child whose client is gone (its job killed) is killed with its process group: nothing the server
  started keeps timing for a job that no longer exists.
Set ``INFBENCH_WORKER=0`` to run each cell in its own fresh interpreter instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

WORKER_DIR = Path("results/.workers")
IDLE_S = 180
START_TIMEOUT_S = 180
# Imports that never touch the CUDA driver: a driver initialised in the server would be unusable in every
# forked child ("Cannot re-initialize CUDA in forked subprocess"). torch._dynamo / inductor query the device
# on import, so they stay out (measured on the H100 host).
PRELOAD = ("numpy", "torch", "transformers", "onnxruntime", "onnx", "infbench.models",
           "infbench.engines.torch_compile", "infbench.engines.ort")
# transformers imports a model's modules lazily, on first use: most of an eager cell's 6-9 s "load weights"
# on the H100 host. They pull in parts of dynamo, so they are preloaded only where a forked child shows that
# importing them leaves the CUDA driver untouched (see preload_if_cuda_free).
PRELOAD_IF_CUDA_FREE = ("transformers.modeling_utils", "transformers.models.auto.modeling_auto",
                        "transformers.models.bert.modeling_bert")
PACKAGE = Path(__file__).resolve().parent


def enabled() -> bool:
    """Off with INFBENCH_WORKER=0, inside an Apptainer job (a server started there would outlive the job's
    container instance, its image mount) and inside a SLURM job."""
    in_container = bool(os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"))
    # a cluster job: the next job may run on another node, where a socket on the shared disk leads nowhere
    in_cluster_job = bool(os.environ.get("SLURM_JOB_ID"))
    return os.environ.get("INFBENCH_WORKER", "1") != "0" and not in_container and not in_cluster_job


def fingerprint() -> str:
    """Changes when the interpreter, the import path or any library source file changes."""
    digest = hashlib.sha256(f"{sys.executable}|{os.environ.get('PYTHONPATH', '')}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_mtime_ns}|{stat.st_size}".encode())
    return digest.hexdigest()[:16]


def socket_path() -> Path:
    return WORKER_DIR / f"cell-{fingerprint()}.sock"


def _send(path: Path, message: dict, timeout: float | None) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(json.dumps(message).encode() + b"\n")
        with conn.makefile("rb") as reply:
            line = reply.readline()
    if not line:
        raise ConnectionError("worker closed the connection without a reply")
    return json.loads(line)


class Unusable(RuntimeError):
    """The server cannot run cells here (its probe failed); the caller runs the cell in-process instead."""


def _start(path: Path, log: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as sink:
        subprocess.Popen([sys.executable, "-m", "infbench.worker", str(path)], stdout=sink, stderr=sink,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if _send(path, {"ping": True}, timeout=5).get("pong"):
                return
        except OSError:
            time.sleep(0.2)
    raise Unusable(f"cell worker did not start within {START_TIMEOUT_S} s (see {log})")


def run(request: dict) -> dict:
    """Run one cell request in a forked child of the (started if needed) server: {'exit': code, 'pid': ...}."""
    path = socket_path()
    try:
        hello = _send(path, {"ping": True}, timeout=30)
    except OSError:
        # jobs that start at once (references, cells on several GPUs) must not each start a server: the
        # first takes the start lock and starts it, the others find it running once they get the lock
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".start-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                hello = _send(path, {"ping": True}, timeout=30)
            except OSError:
                _start(path, path.with_suffix(".log"))
                hello = _send(path, {"ping": True}, timeout=30)
    if not hello.get("usable"):
        raise Unusable(hello.get("reason") or "worker unusable")
    return _send(path, {**request, "cwd": os.getcwd(), "env": dict(os.environ), "run_pid": run_pid()}, timeout=None)


def run_pid() -> int | None:
    """The Snakemake process this job belongs to (the nearest ancestor running snakemake), or None."""
    import psutil

    try:
        for parent in psutil.Process().parents():
            if any("snakemake" in part for part in parent.cmdline()):
                return parent.pid
    except psutil.Error:
        pass
    return None


def alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def handle(request: dict) -> None:
    """What a child does with a request: a reference job or (the default) a shape session."""
    if request.get("job") == "reference":
        from infbench.models import reference_request

        reference_request(request)
    else:
        from infbench.cell import run_request

        run_request(request)


def _reap(pid: int, deadline: float | None) -> tuple[int, bool] | None:
    """(exit code, timed out) of a finished child, killing it first if past ``deadline``; None if running."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return os.waitstatus_to_exitcode(status), False
    if deadline is not None and time.monotonic() >= deadline:
        os.kill(pid, 9)  # a hung cell must not hold the run
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), True
    return None


def wait(pid: int, timeout_s: float | None) -> tuple[int, bool]:
    """Wait for a child, killing it past ``timeout_s``: (exit code, timed out)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while (result := _reap(pid, deadline)) is None:
        time.sleep(0.05)
    return result


def run_job(request: dict) -> dict:
    """Run a request in a worker child or, where the worker is off or unusable, in a child of this process:
    either way a crash or a hang (past request['timeout_s']) ends that child, never the job's bookkeeping."""
    try:
        if not enabled():
            raise Unusable("worker off")
        return run(request)
    except Unusable:
        pid = os.fork()
        if pid == 0:
            sys.stdout.flush()
            os._exit(_child({"cwd": os.getcwd(), "env": dict(os.environ), **request}, handle))
        code, timed_out = wait(pid, request.get("timeout_s"))
        return {"exit": code, "timed_out": timed_out, "pid": pid}


def shutdown_all(directory: Path = WORKER_DIR) -> None:
    """Stop every server of this results tree (Snakemake's onsuccess/onerror call this)."""
    for path in Path(directory).glob("*.sock"):
        try:
            _send(path, {"shutdown": True}, timeout=5)
        except OSError:
            path.unlink(missing_ok=True)
    for lock in Path(directory).glob("*.start-lock"):
        lock.unlink(missing_ok=True)


def _child(request: dict, handler) -> int:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        handler(request)
        return 0
    except BaseException:  # noqa: BLE001 - the child must always leave through os._exit
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def probe_cuda() -> str | None:
    """Where a GPU is visible: can a forked child initialise CUDA? The reason it cannot, or None."""
    from infbench.environment import detect_device

    if detect_device() != "cuda":
        return None
    pid = os.fork()
    if pid == 0:
        try:
            import torch

            torch.zeros(1, device="cuda")
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return None if os.waitstatus_to_exitcode(status) == 0 else "a forked child cannot initialise CUDA"


def serve(path: Path, handler, unusable: str | None = None) -> None:
    """Fork a child per request and answer each client when its child ends; exit when idle or told to.

    Requests are served concurrently (several GPUs time cells at once, each job holding its own device
    lease); each child is killed past its request's timeout_s."""
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    served = 0
    running: dict[int, tuple[socket.socket, float | None]] = {}  # pid → (client, deadline)
    runs: set[int] = set()  # the Snakemake processes whose jobs this server served
    last_activity = last_check = time.monotonic()
    try:
        while True:
            for pid in _orphaned(running):
                # the job that asked for this child is gone (killed with its Snakemake): stop the child too
                with contextlib.suppress(OSError):
                    os.killpg(pid, 9)
            for pid, (conn, deadline) in list(running.items()):
                result = _reap(pid, deadline)
                if result is not None:
                    code, timed_out = result
                    reply = {"exit": code, "timed_out": timed_out, "pid": pid, "server_pid": os.getpid()}
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps(reply).encode() + b"\n")
                    conn.close()
                    del running[pid]
                    last_activity = time.monotonic()
            if not running and time.monotonic() - last_activity > IDLE_S:
                return
            if time.monotonic() - last_check > 1:
                last_check = time.monotonic()
                if not running and runs and not any(alive(pid) for pid in runs):
                    return  # every run it served has ended, even by kill -9: no lingering
            if not select.select([server], [], [], 0.05)[0]:
                continue
            conn, _ = server.accept()
            last_activity = time.monotonic()
            with conn.makefile("rb") as incoming:
                request = json.loads(incoming.readline() or b"{}")
            if request.get("ping"):
                reply = {"pong": True, "pid": os.getpid(), "usable": unusable is None, "reason": unusable}
            elif request.get("shutdown"):
                conn.sendall(b'{"stopped": true}\n')
                conn.close()
                return
            else:
                request["worker"] = {"server_pid": os.getpid(), "served": served}
                served += 1
                if request.get("run_pid"):
                    runs.add(request["run_pid"])
                pid = os.fork()
                if pid == 0:
                    server.close()
                    os.setpgid(0, 0)  # its own group: what it starts (compile workers) is killed with it
                    os._exit(_child(request, handler))
                timeout = request.get("timeout_s")
                running[pid] = (conn, None if timeout is None else time.monotonic() + timeout)
                continue
            conn.sendall(json.dumps(reply).encode() + b"\n")
            conn.close()
    finally:
        server.close()
        path.unlink(missing_ok=True)


def _orphaned(running: dict) -> list[int]:
    """Children whose client closed its connection (a client only ever waits for the reply)."""
    if not running:
        return []
    conns = {conn: pid for pid, (conn, _) in running.items()}
    readable = select.select(list(conns), [], [], 0)[0]
    gone = []
    for conn in readable:
        try:
            if not conn.recv(1, socket.MSG_PEEK):
                gone.append(conns[conn])
        except OSError:
            gone.append(conns[conn])
    return gone


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - a missing library is the engine's to report, per cell
            print(f"preload {name}: {type(error).__name__}: {error}", flush=True)


def preload_if_cuda_free(names=PRELOAD_IF_CUDA_FREE) -> str:
    """Import ``names`` here only if, imported in a forked child, they leave CUDA uninitialised."""
    import importlib

    pid = os.fork()
    if pid == 0:
        try:
            for name in names:
                importlib.import_module(name)
            import torch

            os._exit(3 if torch.cuda.is_initialized() else 0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return "not preloaded: " + ("importing them initialises CUDA" if code == 3 else "import failed")
    for name in names:
        importlib.import_module(name)
    return "preloaded"


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # is_available() without a driver init
    _preload()
    print(f"modelling modules {', '.join(PRELOAD_IF_CUDA_FREE)}: {preload_if_cuda_free()}", flush=True)
    reason = probe_cuda()
    if reason:
        print(f"unusable: {reason}; cells will run in their own interpreters", flush=True)
    serve(Path(sys.argv[1]), handle, reason)
