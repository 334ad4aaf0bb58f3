"""Issue 29: the ways a run still ended badly (items 2-11 and the opset / pretrained-path points), each
reproduced at the smallest level that shows it: the validator, the scripts, the records."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from infbench import config as matrix
from infbench import records

TINY = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
TINY.pop("generation", None)  # the forward workload's inputs; generation has its own tests


def base() -> dict:
    return json.loads(json.dumps(TINY))


def refused(config: dict) -> str:
    with pytest.raises(matrix.ConfigError) as error:
        matrix.validate(config)
    message = str(error.value)
    assert "\n" not in message and message.startswith("invalid config: "), message
    return message


# --- item 2: a YAML alias bomb is refused at once, with one line ------------------------------------------

def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_within_seconds(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(TINY) + alias_bomb(12))  # 12 lines of aliases: 9**12 values expanded
    started = time.monotonic()
    with pytest.raises(matrix.ConfigError) as error:
        matrix.check_config_files([path])
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert message.startswith("invalid config: a5: YAML aliases expand to more than 100,000 values"), message
    assert "\n" not in message


def test_aliases_of_a_real_config_still_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("timing: &t {rounds: 2}\nbatch_sizes: &b [1, 2]\nseq_lens: *b\nstability: {max_cv: 0.2}\n")
    assert matrix.load_strict(path)["seq_lens"] == [1, 2]
    path.write_text("models:\n  m: &m {model_type: bert}\n  n: *m\nx: {a: 1, a: 2}\n")
    with pytest.raises(matrix.ConfigError, match=r"^invalid config: x.a: duplicate key"):
        matrix.load_strict(path)  # a node reached twice through an alias is still checked


# --- item 3: NaN and infinities are not numbers a bound can check -----------------------------------------

@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["timing"].update(budget_s=float("nan")), "timing.budget_s"),
    (lambda c: c["timing"].update(warmup_s=float("inf")), "timing.warmup_s"),
    (lambda c: c.setdefault("accuracy", {}).setdefault("tolerance", {}).update(fp32=float("nan")),
     "accuracy.tolerance.fp32"),
    (lambda c: c.setdefault("stability", {}).update(max_cv=float("nan")), "stability.max_cv"),
    (lambda c: c.setdefault("compare", {}).update(min_change=float("-inf")), "compare.min_change"),
    (lambda c: c["models"]["tiny-bert"].setdefault("overrides", {}).update(layer_norm_eps=float("nan")),
     "models.tiny-bert.overrides.layer_norm_eps"),
])
def test_nan_and_infinities_are_one_line_errors_naming_the_key(mutate, key):
    config = base()
    mutate(config)
    message = refused(config)
    assert message.startswith(f"invalid config: {key}: ") and "is not a finite number" in message, message


def test_nan_written_in_yaml_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base()).replace("budget_s: ", "budget_s: .nan #") )
    with pytest.raises(matrix.ConfigError, match=r"^invalid config: timing.budget_s: nan is not a finite number"):
        matrix.load(path)


# --- item 4: names that cannot be path segments or wildcards, shapes that cannot be paths ------------------

def test_a_name_too_long_for_a_path_segment_is_refused():
    config = base()
    config["models"] = {"m" * 300: {"model_type": "bert"}}
    message = refused(config)
    assert message.startswith("invalid config: models: 'mmmm") and "(300 characters) is too long" in message


def test_a_valid_long_name_still_validates():
    config = base()
    config["models"] = {"m" + "odel-x" * 16 + "-100chars"[: 100 - 97]: config["models"]["tiny-bert"]}
    config["backends"]["onnxruntime-exported-graph-all-optimizations-v2"] = config["backends"].pop("ort")
    matrix.validate(config)


@pytest.mark.parametrize("name", ["ab" * 20, "model-" + "0" * 20])
def test_a_periodic_name_is_refused_naming_it(name):
    """Snakemake's PeriodicWildcardError named neither the key nor the rule of it."""
    config = base()
    config["backends"][name] = {"engine": "torch"}
    message = refused(config)
    assert message.startswith(f"invalid config: backends.{name}: the name ends in "), message


def test_a_huge_batch_size_is_refused():
    config = base()
    config["batch_sizes"] = [10 ** 30]
    assert refused(config).startswith("invalid config: batch_sizes[0]: ")


# --- item 6: control characters in any string ---------------------------------------------------------------

@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(compare={"label": "run\x00a"}), "compare.label"),
    (lambda c: c.update(compare={"against": "tables\n"}), "compare.against"),
    (lambda c: c.update(containers={"cpu": "img\x1b[31m.sif"}), "containers.cpu"),
    (lambda c: c["models"]["tiny-bert"].update(pretrained="dir\x7f"), "models.tiny-bert.pretrained"),
    (lambda c: c["models"]["tiny-bert"].setdefault("overrides", {}).update(tag="a\tb"),
     "models.tiny-bert.overrides.tag"),
])
def test_control_characters_are_one_line_errors_naming_the_key(mutate, key):
    config = base()
    mutate(config)
    message = refused(config)
    assert message.startswith(f"invalid config: {key}: ") and "control character" in message, message


# --- item 8: compare.against is a path the key names ---------------------------------------------------------

def test_compare_against_a_missing_directory_names_the_key(tmp_path):
    config = base()
    config["compare"] = {"against": str(tmp_path / "nonexistent")}
    assert refused(config).startswith("invalid config: compare.against: ") and "does not exist" in refused(config)
    (tmp_path / "empty").mkdir()
    config["compare"] = {"against": str(tmp_path / "empty")}
    assert "has no cells.csv" in refused(config)
    (tmp_path / "empty" / "cells.csv").write_text("model\n")
    config["compare"] = {"against": str(tmp_path / "empty")}
    matrix.validate(config)


# --- item 9: a pretrained config.json that is not an object -------------------------------------------------

def test_a_pretrained_config_json_list_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("[1, 2]")
    with pytest.raises(matrix.ConfigError) as error:
        matrix.model_limits("m", {"pretrained": str(tmp_path / "m")})
    assert str(error.value).startswith("invalid config: models.m.pretrained: ")
    assert "is a JSON list, not an object" in str(error.value)


# --- also: a mistyped relative pretrained path, an opset nothing here supports --------------------------------

def test_a_pretrained_path_that_cannot_be_a_hub_id_says_the_local_path_was_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(matrix.ConfigError) as error:
        matrix.model_limits("m", {"pretrained": "my_models/bert/base"})
    assert str(error.value).startswith("invalid config: models.m.pretrained: local path 'my_models/bert/base' "
                                       "not found")


def test_a_hub_id_that_is_not_a_local_directory_fails_its_build_at_once_offline(tmp_path, monkeypatch):
    """Offline, a mistyped relative path (or an unknown hub id) is not retried against the hub for a minute:
    the build fails at once, saying that no local directory of that name exists."""
    from infbench import models

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(OSError) as error:
        models._load_pretrained("mymodel", False)
    assert time.monotonic() - started < 10
    assert "local directory" in str(error.value) and str(tmp_path / "mymodel") in str(error.value)
    assert "offline" in str(error.value)


def test_an_opset_the_exporter_and_runtime_do_not_support_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the support check is cached in .snakemake/ of the working directory
    config = matrix.validate({**base(), "onnx": {"opset": 99}})
    with pytest.raises(matrix.ConfigError) as error:
        matrix.check_opset(config)
    message = str(error.value)
    assert message.startswith("invalid config: onnx.opset: 99 is not supported here: torch ") and "\n" not in message
    support = matrix._opset_support()
    matrix.check_opset(matrix.validate({**base(), "onnx": {"opset": support["max"]}}))
    # without an ONNX backend, the opset is never read: nothing to check
    no_onnx = matrix.validate({**base(), "backends": {"eager": {"engine": "torch"}}, "onnx": {"opset": 99}})
    matrix.check_opset(no_onnx)


# --- item 11: container images are validated as values, only where containers are used ------------------------

def test_a_whitespace_image_path_is_an_error_only_where_containers_are_used():
    config = matrix.validate({**base(), "containers": {"cpu": "my image.sif"}})  # valid as a value
    with pytest.raises(matrix.ConfigError, match=r"^invalid config: containers.cpu: 'my image.sif' contains "
                                                 r"whitespace"):
        matrix.check_containers(config)
    matrix.check_containers(matrix.validate(base()))


# --- items 7 and 8: command-line tools over a results tree --------------------------------------------------

def timed_record(backend: str, batch: int = 1) -> dict:
    record = records.new_record({"model": "m", "backend": backend, "engine": "torch", "precision": "fp32",
                                 "batch": batch, "seq_len": 8}, {}, None)
    rounds = [{"samples_ms": [1.0, 1.1, 0.9, 1.05, 0.95], "median_ms": 1.0, "started_at": "2026-01-01T00:00:00+00:00",
               "started_unix": 1.0 + i, "window": {"warmup_seconds": 0.1, "loop_seconds": 0.2}} for i in range(3)]
    record["timing"] = {"session": "s", "rounds": rounds, "policy": {}}
    return records.finish(record, "ok")


def results_tree(root: Path, n: int = 6) -> list[Path]:
    paths = []
    for i in range(n):
        path = root / "results/cells/m" / f"b{i}" / "fp32" / "b1_s8.json"
        records.write(timed_record(f"b{i}"), path)
        paths.append(path)
    return paths


def tool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_resummarize_is_all_or_nothing(tmp_path):
    """One truncated record among good ones: the tool names it and rewrites none (it used to rewrite those
    before it, then exit with a traceback)."""
    paths = results_tree(tmp_path)
    cut = paths[4]
    text = cut.read_text()
    cut.write_text(text[: len(text) // 2])
    before = {p: p.read_bytes() for p in paths}
    line = one_line_error(tool("scripts.resummarize", str(tmp_path / "results/cells"), "--host-drift", "0.2"), str(cut))
    assert "nothing rewritten" in line
    assert {p: p.read_bytes() for p in paths} == before
    assert not list((tmp_path / "results/cells").rglob("*.tmp"))
    cut.write_text(text)
    done = tool("scripts.resummarize", str(tmp_path / "results/cells"), "--host-drift", "0.2")
    assert done.returncode == 0 and done.stdout.startswith("6 records resummarized"), done.stderr
    assert all(records.read(p)["timing"]["policy"]["host_drift"] == 0.2 for p in paths)


def test_resummarize_writes_nothing_when_one_write_fails(tmp_path, monkeypatch):
    paths = results_tree(tmp_path, 3)
    before = {p: p.read_bytes() for p in paths}
    real = records.json.dump
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(records.json, "dump", full_disk)
    pairs = [(records.read(p), p) for p in paths]
    with pytest.raises(OSError):
        records.write_all(pairs)
    assert {p: p.read_bytes() for p in paths} == before
    assert not list((tmp_path / "results/cells").rglob("*.tmp"))


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_resummarize_of_a_missing_or_empty_directory_is_an_error(tmp_path, make):
    cells = tmp_path / "cells"
    if make == "empty":
        cells.mkdir()
    one_line_error(tool("scripts.resummarize", str(cells)), str(cells))


def test_compare_runs_on_a_missing_directory_is_one_line(tmp_path):
    one_line_error(tool("scripts.compare_runs", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--out",
                        str(tmp_path / "x.html")), str(tmp_path / "nope"), "no such directory")
    (tmp_path / "tables").mkdir()
    one_line_error(tool("scripts.compare_runs", str(tmp_path / "tables"), str(tmp_path / "tables"), "--out",
                        str(tmp_path / "x.html")), str(tmp_path / "tables"), "cells.csv")


def test_rerun_unstable_and_timing_cost_name_a_truncated_record(tmp_path):
    paths = results_tree(tmp_path, 3)
    text = paths[1].read_text()
    paths[1].write_text(text[: len(text) // 3])
    one_line_error(tool("scripts.rerun_unstable", "--results", str(tmp_path / "results"), "--list"), str(paths[1]))
    one_line_error(tool("scripts.timing_cost", str(tmp_path / "results/cells")), str(paths[1]))
    one_line_error(tool("scripts.timing_cost", str(tmp_path / "nowhere")), str(tmp_path / "nowhere"))
    paths[1].write_text(text)
    cost = tool("scripts.timing_cost", str(tmp_path / "results/cells"))
    assert cost.returncode == 0 and json.loads(cost.stdout)["cells"] == 3
    listing = tool("scripts.rerun_unstable", "--results", str(tmp_path / "results"), "--list")
    assert listing.returncode == 0 and "no unstable cells" in listing.stdout


# --- item 5: failures of the machine are not the cell's answer; one way to retry -------------------------------

@pytest.mark.parametrize("reason, kind", [
    ("graph exported: ONNX export: OSError: [Errno 28] No space left on device", "disk full"),
    ("MemoryError: fault engine: out of memory at batch 2", "out of memory"),
    ("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out of memory"),
    ("the shape session exited with -9 during round (round 1) before writing records", "killed"),
    ("the shape session exited with 139 during prepare before writing records", None),  # a segfault: its answer
    ("timed out after 15 s (cell_timeout_s) during prepare: the shape session was killed", None),
    ("RuntimeError: fault engine: injected failure", None),
    ("non-finite values in the output", None),
])
def test_failures_of_the_machine_are_marked_for_retry(reason, kind):
    record = records.finish(records.new_record({"model": "m"}, {}, None), "failed", reason)
    assert records.environmental(reason) == kind
    assert record["retry"] is (kind is not None) and record["retry_why"] == kind
    assert records.finish(records.new_record({"model": "m"}, {}, None), "ok")["retry"] is False


def failed_tree(root: Path) -> Path:
    """Cells of a run in which a disk filled up: the export failed (so did its ORT cells), an eager cell ran
    out of memory, another cell failed for its own reason; a second model's graph was deleted."""
    results = root / "results"
    cell = lambda model, backend, batch, status, reason=None: records.write(  # noqa: E731
        records.finish(records.new_record({"model": model, "backend": backend, "engine": "torch", "precision": "fp32",
                                           "batch": batch, "seq_len": 8}, {}, None), status, reason),
        results / "cells" / model / backend / "fp32" / f"b{batch}_s8.json")
    cell("m", "eager", 1, "ok")
    cell("m", "ort", 1, "failed", "graph exported: ONNX export: OSError: [Errno 28] No space left on device")
    cell("m", "eager", 2, "failed", "MemoryError: out of memory at batch 2")
    cell("m", "nan", 4, "failed", "non-finite values in the output")
    cell("n", "ort", 1, "failed", "ONNX graph results/onnx/n/exported.onnx does not match its sidecar's sha256")
    (results / "onnx" / "m").mkdir(parents=True)
    (results / "onnx" / "m" / "exported.onnx").write_bytes(b"")
    (results / "onnx" / "m" / "exported.json").write_text(json.dumps(
        {"status": "failed", "reason": "ONNX export: OSError: [Errno 28] No space left on device"}))
    (results / "onnx" / "n").mkdir(parents=True)
    (results / "onnx" / "n" / "exported.json").write_text(json.dumps({"status": "ok", "sha256": "0" * 64}))
    cell("k", "ort", 1, "failed", "ONNX graph results/onnx/k/optimized.onnx does not match its sidecar's sha256: rebuild it")
    (results / "onnx" / "k").mkdir(parents=True)
    (results / "onnx" / "k" / "optimized.onnx").write_bytes(b"corrupt")
    (results / "onnx" / "k" / "optimized.json").write_text(json.dumps({"status": "ok", "sha256": "0" * 64}))
    (results / "onnx" / "k" / "exported.onnx").write_bytes(b"intact")
    (results / "onnx" / "k" / "exported.json").write_text(json.dumps(
        {"status": "ok", "sha256": __import__("hashlib").sha256(b"intact").hexdigest()}))
    (results / "models" / "m").mkdir(parents=True)
    (results / "models" / "m" / "manifest.json").write_text(json.dumps({"input_names": ["input_ids"]}))
    return results


def test_retry_failed_forces_failed_cells_and_their_failed_upstream_steps(tmp_path):
    from scripts.retry_failed import targets

    results = failed_tree(tmp_path)
    force = targets(results)
    assert set(force) == {str(results / p) for p in (
        "shapes/m/b1_s8.json", "shapes/m/b2_s8.json", "shapes/m/b4_s8.json", "shapes/n/b1_s8.json",
        "shapes/k/b1_s8.json",
        "onnx/m/exported.onnx",  # failed for want of disk
        "onnx/n/exported.onnx",  # deleted by the user: a plain rerun would not rebuild it
        "onnx/k/optimized.onnx",  # corrupt ("rebuild it"); its intact exported graph is left alone
    )}
    assert "No space left" in force[str(results / "onnx/m/exported.onnx")]
    only = targets(results, environmental=True)
    assert set(only) == {str(results / p) for p in ("shapes/m/b1_s8.json", "shapes/m/b2_s8.json",
                                                      "onnx/m/exported.onnx")}
    listing = tool("scripts.retry_failed", "--results", str(results), "--list", "--environmental")
    assert listing.returncode == 0 and str(results / "onnx/m/exported.onnx") in listing.stdout
    one_line_error(tool("scripts.retry_failed", "--results", str(tmp_path / "none")), str(tmp_path / "none"))


def test_retry_notice_counts_the_machines_failures(tmp_path):
    results = failed_tree(tmp_path)
    notice = records.retry_notice(results / "cells")
    assert notice.startswith("infbench: 2 cell(s) failed for reasons of the machine (1 disk full, 1 out of memory)")
    assert "scripts.retry_failed" in notice and "\n" not in notice
    assert records.retry_notice(tmp_path / "nothing") is None
