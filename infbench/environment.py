"""What a measurement ran on: library versions, the machine, the commit.

Versions come from package metadata, not imports, so that recording them costs nothing and does not pull
torch into an ONNX Runtime cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "tensorrt": "tensorrt",
    "snakemake": "snakemake",
    "numpy": "numpy",
}

REPO_ROOT = Path(__file__).resolve().parent.parent


# Builds published under another distribution name; the first one installed is the one that imports first
# in the usual layouts (the GPU build installed beside the CPU one shadows it).
ALTERNATIVES = {"onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
                "onnxruntime-genai": ("onnxruntime-genai-cuda", "onnxruntime-genai")}


def package_version(distribution: str) -> str | None:
    for name in ALTERNATIVES.get(distribution, (distribution,)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def git_commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it: a copied working tree (a
    device machine's copy, an edited checkout) keeps an older .git, and its records must not name a commit
    whose code they were not measured with. ``INFBENCH_GIT_COMMIT``, where set, names it instead: a copy made
    without .git (tools/offline-gpu-run.sh's run tree) says which commit it was copied from."""
    named = os.environ.get("INFBENCH_GIT_COMMIT", "").strip()
    if named:
        return named

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = status is None or status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def software() -> dict:
    env = {name: package_version(dist) for name, dist in PACKAGES.items()}
    env.update(
        python=platform.python_version(),
        platform=platform.platform(),
        git_commit=git_commit(),
        python_executable=sys.executable,
        container=container(),
    )
    return env


def container() -> dict | None:
    """The Apptainer image this process runs in (None outside one): path, SIF sha256, labels, OS.

    The labels and /etc/os-release are read inside the container, so they prove where the job ran; the
    sha256 identifies the exact image file (computed once per image file and cached beside the results).
    """
    image = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    if not image:
        return None
    labels_path = Path("/.singularity.d/labels.json")
    labels = json.loads(labels_path.read_text()) if labels_path.exists() else {}
    known = json.loads(os.environ.get("INFBENCH_IMAGE_SHA256", "{}"))  # hashed by the workflow, outside
    return {"runtime": "apptainer", "image": image, "name": os.environ.get("APPTAINER_NAME"),
            "sha256": known.get(image) or image_sha256(Path(image)), "labels": labels, "os": os_release()}


def export_image_hashes(images: list[str]) -> None:
    """Hash the local image files on the host and hand the hashes to the jobs (see container())."""
    hashes = {image: image_sha256(Path(image)) for image in set(images) if "://" not in image}
    os.environ["INFBENCH_IMAGE_SHA256"] = json.dumps(hashes)


def image_sha256(image: Path, cache_dir: Path = Path("results/.cache/images")) -> str | None:
    """sha256 of an image file, cached by (path, size, mtime): hashing a GB per cell would cost seconds."""
    try:
        stat = image.stat()
    except OSError:
        return None  # not visible inside (not bound): the labels still identify it
    key = hashlib.sha256(f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    cached = cache_dir / key
    if cached.exists():
        return cached.read_text().strip()
    from infbench.artifacts import file_sha256  # numpy-importing module: only when an image is hashed

    digest = file_sha256(image)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}")
    tmp.write_text(digest)
    tmp.replace(cached)
    return digest


def os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_device(threads: int) -> dict:
    """The device section of a CPU cell: what ran it and with how many threads (pinned by the engine)."""
    return {
        "kind": "cpu",
        "name": cpu_name(),
        "lease": leased_gpu(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "driver": None,
        "cuda": None,
        "sm_clock_mhz": None,
        "temp_c": None,
        "power_w": None,
    }


def cuda_device(index: int = 0) -> dict:
    """The device section of a GPU cell, from NVML (absent NVML: the name from torch, the rest None).

    Clocks, temperature and power are read now; the cell reads them before and after timing so that a
    clock that moved during the measurement is visible in the record.
    """
    info = {"kind": "cuda", "index": index, "name": None, "driver": None, "cuda": None, "sm_clock_mhz": None,
            "temp_c": None, "power_w": None, "nvml": None}
    try:
        import torch

        info["cuda"] = torch.version.cuda
        info["name"] = torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - environment probing must never fail a cell
        pass
    info.update(nvml_sample(index))
    info["lease"] = leased_gpu()
    return info


def leased_gpu() -> str | None:
    """The physical GPU this process leased (infbench.devices), as CUDA_VISIBLE_DEVICES names it."""
    return os.environ.get("INFBENCH_GPU")


def _nvml(index: int):
    """(pynvml, handle of GPU ``index``); raises ImportError without nvidia-ml-py, NVMLError without a driver.

    NVML numbers GPUs physically and ignores CUDA_VISIBLE_DEVICES: under a lease, the leased GPU is read."""
    import pynvml

    lease = leased_gpu()
    if lease is not None and lease.isdigit():
        index = int(lease)
    pynvml.nvmlInit()
    return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)


def nvml_sample(index: int = 0) -> dict:
    """SM clock (MHz), temperature (C), power (W), driver from NVML; {'nvml': reason} when NVML is absent."""
    try:
        pynvml, handle = _nvml(index)
    except ImportError:
        return {"nvml": "nvidia-ml-py not installed"}
    except Exception as error:  # noqa: BLE001 - NVML errors (no driver, no permission) become data
        return {"nvml": f"NVML unavailable: {error}"}
    try:
        return {"nvml": "ok", "name": pynvml.nvmlDeviceGetName(handle), "driver": pynvml.nvmlSystemGetDriverVersion(),
                **_readings(pynvml, handle)}
    except Exception as error:  # noqa: BLE001 - NVML errors (no driver, no permission) become data
        return {"nvml": f"NVML unavailable: {error}"}


def _readings(pynvml, handle) -> dict:
    return {"sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "temp_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0}


def gpu_state(index: int = 0) -> dict:
    """The SM clock (MHz), power (W) and temperature (C) now -- nvml_sample's readings without the device's
    name and driver: taken after each timed window (infbench.measure.rounds); empty where NVML is absent."""
    try:
        return _readings(*_nvml(index))
    except Exception:  # noqa: BLE001 - no NVML (no driver, not installed): no sample, never a failed cell
        return {}


def nvml_process_bytes(index: int = 0) -> int | None:
    """Device memory held by this process (ORT's arena does not shrink, so after timing this is its peak)."""
    try:
        pynvml, handle = _nvml(index)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid():
                return int(process.usedGpuMemory)
    except Exception:  # noqa: BLE001 - no NVML, no number
        return None
    return None


def before_after(before: dict, after: dict) -> dict:
    """Device section with [before, after] for what can move during a cell (clock, temperature, power)."""
    merged = dict(before)
    for key in ("sm_clock_mhz", "temp_c", "power_w"):
        merged[key] = [before.get(key), after.get(key)]
    return merged


def detect_device() -> str:
    """'cuda' when an NVIDIA GPU is visible to the driver, else 'cpu' — without importing torch."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return "cuda"
    return "cpu"
