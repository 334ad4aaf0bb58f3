"""The family matrix (config/families.yaml): one tiny model of every architecture family the README promises,
through the real workflow (build, reference, export, fusion, eager and fused-ORT cells, tables, report).

What a family must show: every cell `ok` or a one-line reason (no traceback, no colour codes); the roofline
counted from the model itself (no BERT key names); what was benchmarked (encoder, prefill, ...); which
fusions ORT found, and where it has no fused attention, that the graph says so instead of failing.
"""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake
from infbench import config as matrix

FAMILIES = yaml.safe_load((REPO / "config" / "families.yaml").read_text())
BENCHMARKED = {"t5": "encoder", "bart": "encoder", "gpt2": "prefill", "llama": "prefill", "qwen2": "prefill"}
NO_FUSED_ATTENTION = {"deberta-v2", "mpnet", "t5"}  # relative position bias: ORT has no fused attention
# Families whose fused graph must run (a regression here is a fusion that broke again).
MUST_RUN_FUSED = {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "gpt2", "llama", "qwen2",
                  "bart", "deberta-v2", "mpnet", "t5"}


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("families")
    shutil.copy(REPO / "config" / "families.yaml", workdir / "families.yaml")
    start = time.perf_counter()
    snakemake(workdir, "--configfile", "families.yaml")
    print(f"family matrix: {time.perf_counter() - start:.0f} s")
    return workdir


def records(workdir) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "results" / "cells").rglob("*.json"))]


def test_the_matrix_covers_the_promised_families():
    wanted = {"bert", "roberta", "distilbert", "albert", "electra", "deberta-v2", "mpnet", "xlm-roberta", "gpt2",
              "llama", "qwen2", "t5", "bart"}
    assert wanted <= set(FAMILIES["models"])
    config = matrix.validate(yaml.safe_load((REPO / "config" / "families.yaml").read_text()))
    matrix.check_models(config)


def test_every_family_ends_ok_or_with_a_one_line_reason(family_run):
    recs = records(family_run)
    assert len(recs) == len(FAMILIES["models"]) * 2
    for record in recs:
        key = record["key"]
        reason = record.get("reason") or ""
        assert "\n" not in reason and "\x1b" not in reason, (key, reason)
        assert record["status"] == "ok" or reason, key
        if key["backend"] == "eager" or key["model"] in MUST_RUN_FUSED:
            assert record["status"] == "ok", (key, reason)


def test_fused_ops_are_visible_per_model(family_run):
    for record in records(family_run):
        key = record["key"]
        if key["backend"] != "ort-fused" or record["status"] != "ok":
            continue
        fused = record["prepare"]["fused_ops"]
        assert fused, key
        attention = sum(fused.get(op, 0) for op in ("Attention", "MultiHeadAttention", "GroupQueryAttention"))
        assert (attention == 0) == (key["model"] in NO_FUSED_ATTENTION), (key, fused)
        sidecar = json.loads((family_run / f"results/onnx/{key['model']}/optimized.json").read_text())
        assert sidecar["fusion"]["missing"] == (["attention"] if key["model"] in NO_FUSED_ATTENTION else []), key
        assert "fused:" in sidecar["fusion"]["note"]


def test_tables_and_report_complete_with_counted_flops(family_run):
    cells = pd.read_csv(family_run / "results/tables/cells.csv")
    assert len(cells) == len(FAMILIES["models"]) * 2
    assert cells["fused_ops"].notna().sum() == ((cells["backend"] == "ort-fused") & (cells["status"] == "ok")).sum()
    roofline = pd.read_csv(family_run / "results/tables/roofline.csv")
    assert len(roofline) == (cells["status"] == "ok").sum()
    assert (roofline["flops"] > 0).all() and (roofline["min_bytes"] > 0).all()
    for model in FAMILIES["models"]:
        assert set(roofline[roofline["model"] == model]["benchmarked"]) == {BENCHMARKED.get(model, "model")}
        manifest = json.loads((family_run / f"results/models/{model}/manifest.json").read_text())
        assert manifest["benchmarked"] == BENCHMARKED.get(model, "model")
    html = (family_run / "report/index.html").read_text()
    assert all(model in html for model in FAMILIES["models"])
    # the report's per-model fusion table: every model's fused graph, and what is unfused where ORT has none
    fusions = html.split('id="fusions"')[1].split("<h2")[0]
    assert all(model in fusions for model in FAMILIES["models"])
    assert fusions.count("attention unfused") == len(NO_FUSED_ATTENTION)
    assert cells["fusion"].notna().sum() == cells["fused_ops"].notna().sum()
