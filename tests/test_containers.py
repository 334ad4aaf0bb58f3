"""`snakemake --sdm apptainer` for real: Apptainer installed from Debian's source package and PyPI
(tools/install-apptainer.sh), the CPU image built from containers/cpu.def, the tiny config run with every
job inside it, and a second run that reruns nothing.

Slow the first time on a machine (Apptainer ~8 min, the image ~5-10 min); the image is cached by the hash of
its definition and requirements. Where Apptainer cannot be installed, the tests skip with the reason
(shown by pytest -rs), never pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake

PREFIX = Path(os.environ.get("INFBENCH_APPTAINER_PREFIX", "/opt/apptainer"))
CACHE = Path(os.environ.get("INFBENCH_IMAGE_CACHE", Path.home() / ".cache" / "infbench"))
# root on these machines lacks CAP_SYS_RESOURCE (see tools/install-apptainer.sh)
os.environ.setdefault("APPTAINER_DROP_CAPS", "CAP_SYS_RESOURCE")


def _runs(binary: Path) -> bool:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


@pytest.fixture(scope="module")
def apptainer() -> Path:
    binary = PREFIX / "bin" / "apptainer"
    if not _runs(binary):
        log = CACHE / "install-apptainer.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as sink:
            result = subprocess.run(["bash", str(REPO / "tools/install-apptainer.sh"), str(PREFIX)], stdout=sink,
                                    stderr=subprocess.STDOUT, timeout=1800)
        if result.returncode != 0 or not _runs(binary):
            tail = log.read_text().strip().splitlines()[-3:]
            pytest.skip(f"Apptainer could not be installed here (exit {result.returncode}): {' | '.join(tail)}")
    os.environ["PATH"] = f"{binary.parent}{os.pathsep}{os.environ['PATH']}"
    return binary


@pytest.fixture(scope="module")
def cpu_image(apptainer) -> Path:
    digest = hashlib.sha256()
    for part in ("containers/cpu.def", "requirements.txt"):
        digest.update((REPO / part).read_bytes())
    CACHE.mkdir(parents=True, exist_ok=True)
    image = CACHE / f"infbench-cpu-{digest.hexdigest()[:16]}.sif"
    if not image.exists():
        command = [str(apptainer), "build", "--force"]
        # this project's machines: torch's CPU wheel is a local file, PyPI sits behind a proxy with its own CA
        # and download.pytorch.org is unreachable (see containers/cpu.def)
        if Path("/opt/wheels").is_dir():
            command += ["--bind", "/opt/wheels:/wheels", "--build-arg", "torch_index=https://pypi.org/simple"]
        if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
            command += ["--bind", "/etc/ssl/certs:/host-certs"]
        tmp = image.with_suffix(".building.sif")
        result = subprocess.run([*command, str(tmp), "containers/cpu.def"], cwd=REPO, capture_output=True,
                                text=True, timeout=2400)
        assert result.returncode == 0, f"apptainer build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        tmp.replace(image)
    return image


def test_tiny_config_runs_every_job_inside_the_image_and_reruns_nothing(cpu_image, tmp_path):
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config.pop("generation", None)  # forward cells only here
    config["containers"] = {"cpu": str(cpu_image)}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--sdm", "apptainer", "--configfile", "tiny.yaml")

    image_sha256 = hashlib.sha256(cpu_image.read_bytes()).hexdigest()
    records = [json.loads(p.read_text()) for p in (tmp_path / "results/cells").rglob("*.json")]
    assert len(records) == 16
    for record in records:
        container = record["env"]["container"]
        assert container["image"] == str(cpu_image)
        assert container["sha256"] == image_sha256
        assert container["labels"]["org.infbench.image"] == "cpu"  # read from inside the image
        assert container["os"] == "Debian GNU/Linux 12 (bookworm)"
        assert record["env"]["python_executable"].startswith("/opt/venv/")  # the image's interpreter
    measured = [r for r in records if r["status"] == "ok"]
    assert len(measured) >= 10, [(r["key"], r["reason"]) for r in records if r["status"] != "ok"]
    environment = (tmp_path / "results/tables/environment.csv").read_text()
    assert f"{cpu_image} (sha256:{image_sha256[:12]})" in environment

    again = snakemake(tmp_path, "-n", "--use-singularity", "--configfile", "tiny.yaml")  # the old spelling
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_missing_image_stops_before_any_job(tmp_path):
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config.pop("generation", None)  # forward cells only here
    config["containers"] = {"cpu": "nowhere/missing.sif"}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--sdm", "apptainer", "--configfile", "tiny.yaml", check=False)
    assert result.returncode != 0
    assert "invalid config: containers.cpu: image file 'nowhere/missing.sif' does not exist" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
    plain = snakemake(tmp_path, "-n", "--configfile", "tiny.yaml")  # without containers the image is not needed
    assert "bench" in plain.stdout
