"""AOTInductor packages compiled ahead of timing: keys, reuse, failures as data, and the workflow around them."""

from __future__ import annotations

import json
import pytest
import yaml
from conftest import REPO, snakemake

from infbench import aoti

MODEL = '{"model_type":"bert"}'


def spec(**over):
    args = {"model_entry": MODEL, "backend": "aoti", "options": {}, "precision": "fp32", "shape": (1, 8),
            "grid": ((1,), (8, 16))}
    args.update(over)
    return aoti.package_spec(**args)


def test_a_package_key_names_everything_it_depends_on_and_nothing_else():
    base = spec()
    assert spec()["key"] == base["key"]
    assert spec(backend="another-name")["key"] == base["key"]  # same options: the same package
    for change in ({"options": {"mode": "max-autotune"}}, {"precision": "fp16"}, {"shape": (1, 16)},
                   {"model_entry": '{"model_type":"roberta"}'}):
        assert spec(**change)["key"] != base["key"], change
    dynamic = spec(options={"dynamic": True})
    assert dynamic["profile"] == "dynamic" and dynamic["range"] == {"batch": [1, 1], "seq_len": [8, 16]}
    assert spec(options={"dynamic": True}, shape=(1, 16))["key"] == dynamic["key"]  # one package per grid
    assert spec(options={"dynamic": True}, grid=((1,), (8, 32)))["key"] != dynamic["key"]


def test_built_packages_are_reused_and_failed_compiles_are_data(tmp_path):
    done, broken = spec(), spec(shape=(1, 16))
    package = aoti.package_path(tmp_path, done["key"])
    package.write_bytes(b"compiled")
    package.with_suffix(".json").write_text(json.dumps({"status": "ok", "spec": done, "sha256": "x"}))
    index = aoti.compile_all(tmp_path / "no-such-model", [done, broken], tmp_path, "cpu", workers=2)
    assert index[done["key"]]["reused"] is True  # not compiled again
    assert index[broken["key"]]["status"] == "failed" and "\n" not in index[broken["key"]]["reason"]
    assert aoti.read_sidecar(aoti.package_path(tmp_path, broken["key"]))["status"] == "failed"


def test_a_failed_or_tampered_package_is_recorded_never_timed(tmp_path):
    from infbench.engines import aot_inductor
    from infbench.engines.base import CellContext, CellUnusable

    package = tmp_path / "k.pt2"
    package.write_bytes(b"compiled")
    package.with_suffix(".json").write_text(json.dumps({"status": "failed", "reason": "C++ compiler missing"}))
    context = CellContext(tmp_path, None, {}, "fp32", {}, "cpu", 1, package)
    with pytest.raises(CellUnusable, match="AOTInductor compile failed: C\\+\\+ compiler missing"):
        aot_inductor.prepare(context)
    package.with_suffix(".json").write_text(json.dumps({"status": "ok", "sha256": "0" * 64, "spec": spec()}))
    with pytest.raises(CellUnusable, match="does not match its sidecar's sha256"):
        aot_inductor.prepare(context)


@pytest.fixture(scope="module")
def aoti_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("aoti_run")
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config.pop("generation", None)  # forward cells only here
    config.update(precisions=["fp32"], seq_lens=[8, 16],
                  backends={"eager": {"engine": "torch"}, "aoti": {"engine": "aot_inductor", "seq_lens": [8]},
                            "aoti-dynamic": {"engine": "aot_inductor", "options": {"dynamic": True}}})
    config["timing"] = {**config["timing"], "budget_s": 0.05, "rounds": 2}
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--configfile", "c.yaml")
    return workdir, config


def test_cells_load_packages_compiled_ahead(aoti_run):
    workdir, _ = aoti_run
    index = json.loads((workdir / "results/compiled/tiny-bert/index.json").read_text())
    assert len(index) == 2 and all(info["status"] == "ok" for info in index.values())  # static b1_s8 + dynamic
    for path in (workdir / "results/cells/tiny-bert").glob("aoti*/fp32/*.json"):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", record["reason"]
        assert record["accuracy"]["passed"]
        prepare = record["prepare"]
        assert prepare["compiled"].startswith("AOTInductor package") and prepare["package_sha256"]
        assert prepare["compile_seconds_ahead"] > 0 and prepare["load_seconds"] < prepare["compile_seconds_ahead"]
    dynamic = {json.loads(p.read_text())["prepare"]["package"] for p in (workdir / "results/cells/tiny-bert/aoti-dynamic").rglob("*.json")}
    assert len(dynamic) == 1  # one package served both shapes


def test_a_new_shape_compiles_only_its_own_package(aoti_run):
    """The static backend gains seq_len 16: the compile job runs again but builds only the new package (the
    others are reused by key); no model, graph or reference is rebuilt."""
    workdir, config = aoti_run
    before = json.loads((workdir / "results/compiled/tiny-bert/index.json").read_text())
    changed = json.loads(json.dumps(config))
    changed["backends"]["aoti"]["seq_lens"] = [8, 16]
    (workdir / "changed.yaml").write_text(yaml.safe_dump(changed))
    snakemake(workdir, "--configfile", "changed.yaml", "--until", "compile_aoti")
    after = json.loads((workdir / "results/compiled/tiny-bert/index.json").read_text())
    assert set(before) < set(after) and len(after) == len(before) + 1
    assert all(after[key].get("reused") for key in before)
    (new,) = set(after) - set(before)
    assert after[new]["status"] == "ok" and after[new]["spec"]["shape"] == [1, 16]
    jobs = snakemake(workdir, "-n", "--configfile", "changed.yaml").stdout
    for rule in ("build_model", "export_onnx", "reference", "compile_aoti"):
        assert f"rule {rule}:" not in jobs


def test_a_cuda_package_load_builds_no_cpu_isa_probe_and_a_cpu_one_keeps_it(monkeypatch):
    """The ISA probe only feeds an advisory warning, but costs a fresh interpreter per probe: skipped where the
    package runs no CPU kernel (CUDA), kept where it does (a CPU package's kernels are vectorised code). The
    host is made to report AMX, whose probe ``cpp.vec_isa_ok`` alone does not skip (the H100 host has AMX)."""
    import torch
    import torch._inductor.config
    from torch._inductor import cpu_vec_isa

    from infbench.engines.aot_inductor import no_isa_probe

    probes = []
    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", lambda self, code: probes.append(str(self)) or True)
    flags = ["avx2", "avx512", "avx512_vnni", "amx_tile"]
    monkeypatch.setattr(cpu_vec_isa, "x86_isa_checker", lambda: flags)
    monkeypatch.setattr(cpu_vec_isa.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_init_amx", lambda: True, raising=False)
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    try:
        with no_isa_probe("cuda"):
            assert torch._inductor.config.cpp.vec_isa_ok is True
            picked = cpu_vec_isa.pick_vec_isa()
            listed = [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()]
        assert probes == []
        assert "amx_tile" in str(picked) and "avx2" in listed
        with no_isa_probe("cpu"):
            cpu_vec_isa.pick_vec_isa()
        assert probes  # a CPU package's load still probes
    finally:
        cpu_vec_isa.valid_vec_isa_list.cache_clear()