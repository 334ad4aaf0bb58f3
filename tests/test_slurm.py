"""The matrix on a SLURM cluster through Snakemake's slurm executor (profiles/slurm), for real: a one-node
SLURM on localhost (tools/local-slurm.sh: Debian's slurm-wlm, munge, slurmdbd) with one fake GPU, the
timing jobs asking for `gpu=1` (faked device count), everything else for none; sacct proves SLURM ran them.
Skips with the reason where SLURM cannot be installed or started."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
import yaml
from conftest import REPO, snakemake

STATE = "/tmp/slurm-infbench"


def _up() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="module")
def cluster():
    script = str(REPO / "tools/local-slurm.sh")
    env = {**os.environ, "B": STATE}
    if not _up():
        for step in ("install", "start"):
            if step == "install" and shutil.which("slurmctld"):
                continue
            result = subprocess.run(["bash", script, step], env=env, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
                pytest.skip(f"local SLURM could not {step}: {' | '.join(tail)}")
    if not _up():
        pytest.skip("local SLURM did not come up (sinfo fails)")
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="in requirements-test.txt")
    yield


def test_tiny_matrix_runs_through_slurm_with_gpu_requests_for_timing_jobs(cluster, tmp_path):
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config.pop("generation", None)  # forward cells only here
    config.update(precisions=["fp32"], backends={"eager": {"engine": "torch"},
                                                 "ort": {"engine": "onnxruntime", "options": {"graph": "exported"}}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    os.environ["INFBENCH_FAKE_GPUS"] = "1"  # timing jobs take gpu=1, as on a GPU cluster (the node's GPU is fake)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")  # this run's jobs only: an earlier run may have used the same path
    try:
        snakemake(tmp_path, "--profile", str(REPO / "profiles/slurm"), "--configfile", "c.yaml", "--jobs", "4",
                  "--slurm-init-seconds-before-status-checks", "2", "--slurm-no-account",
                  # this 2-core node is smaller than the profile's per-rule requests
                  "--default-resources", "runtime=10", "mem_mb=1000", "cpus_per_task=1",
                  "--set-resources", "bench:mem_mb=1500", "build_model:mem_mb=2000", "export_onnx:mem_mb=2000")
    finally:
        del os.environ["INFBENCH_FAKE_GPUS"]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results/cells").rglob("*.json")]
    assert len(records) == 4 and {r["status"] for r in records} == {"ok"}
    assert {r["device"]["lease"] for r in records} == {"0"}
    assert (tmp_path / "report/index.html").exists()

    accounting = subprocess.run(["sacct", "-n", "-X", "-P", "-S", started, "-o", "JobID,State,AllocTRES,WorkDir"],
                                capture_output=True, text=True, check=True).stdout.splitlines()
    jobs = [line.split("|") for line in accounting if line.endswith(f"|{tmp_path}")]
    assert jobs and all(state == "COMPLETED" for _, state, _, _ in jobs), jobs
    with_gpu = [job for job in jobs if "gres/gpu=1" in job[2]]
    # one GPU per timing job (2 shape jobs of 2 cells each + the device peak measurement); model, ONNX,
    # reference, report: none (splitting bundles into records is a local rule)
    assert len(with_gpu) == 3
    assert len(jobs) > len(with_gpu)
