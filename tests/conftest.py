"""Shared fixtures: one real run of the tiny config, reused by the workflow and engine tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Tests never reach a model hub: pretrained models come from local directories only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI of this environment on the repository's Snakefile inside ``workdir``."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A working directory in which the tiny config has run end to end, for real."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    shutil.copy(REPO / "config" / "tiny.yaml", workdir / "tiny.yaml")
    snakemake(workdir, "--configfile", "tiny.yaml")
    return workdir


def dry_run(workdir: Path, config: dict | None = None, *extra: str) -> dict[str, list[str]]:
    """Jobs a dry run would execute: rule → outputs."""
    args = ["-n", *extra]
    if config is not None:
        (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
        args += ["--configfile", "changed.yaml"]
    output = snakemake(workdir, *args).stdout
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):", line)
        if match:
            rule = match.group(1)
            jobs.setdefault(rule, [])
        elif rule and line.strip().startswith("output:"):
            jobs[rule].extend(line.split(":", 1)[1].strip().split(", "))
    return jobs
