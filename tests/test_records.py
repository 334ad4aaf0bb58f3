import json
import math

import pytest

from infbench import records


def key(**over):
    return {"model": "m", "backend": "eager", "engine": "torch", "precision": "fp32", "batch": 1, "seq_len": 8, **over}


def test_every_record_has_all_sections():
    record = records.new_record(key(), {}, "logs/x.log")
    for section in ("schema_version", "key", "status", "reason", "log", "timing", "throughput", "accuracy",
                    "prepare", "memory", "device", "env", "retry", "retry_why", "started_at", "finished_at"):
        assert section in record


def test_non_ok_records_need_a_one_line_reason():
    record = records.new_record(key(), {}, None)
    with pytest.raises(ValueError):
        records.finish(record, "failed")
    with pytest.raises(ValueError):
        records.finish(record, "great", "x")
    records.finish(record, "failed", "\n  RuntimeError: boom\n  at line 3\n")
    assert record["reason"] == "RuntimeError: boom"


def test_write_is_atomic_and_round_trips(tmp_path):
    record = records.finish(records.new_record(key(), {"mode": "x"}, None), "ok")
    record["timing"] = {"median_ms": 1.5, "cv": math.inf}
    path = tmp_path / "a" / "b.json"
    records.write(record, path)
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temporary left behind
    back = records.read(path)
    assert back["timing"] == {"median_ms": 1.5, "cv": None}  # non-finite numbers become null, never invalid JSON
    assert back["options"] == {"mode": "x"}


def test_failed_write_leaves_the_old_record_intact(tmp_path):
    path = tmp_path / "r.json"
    records.write(records.finish(records.new_record(key(), {}, None), "ok"), path)
    before = path.read_text()
    with pytest.raises(TypeError):
        records.write({"schema_version": records.SCHEMA_VERSION, "bad": object()}, path)
    assert path.read_text() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_read_rejects_other_schema_versions(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(ValueError, match="schema_version"):
        records.read(path)


def test_git_commit_marks_a_tree_that_differs_from_its_commit(tmp_path, monkeypatch):
    """A device machine's copy of the tree keeps an older .git: its records must not claim that commit's code."""
    import subprocess

    from infbench import environment

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    monkeypatch.delenv("INFBENCH_GIT_COMMIT", raising=False)
    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", "code.py")
    git("commit", "-qm", "first")
    monkeypatch.setattr(environment, "REPO_ROOT", tmp_path)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert environment.git_commit() == head
    (tmp_path / "untracked.txt").write_text("not code\n")
    assert environment.git_commit() == head  # untracked files (results, logs) are not the measured code
    (tmp_path / "code.py").write_text("a = 2\n")
    assert environment.git_commit() == head + "+dirty"
    monkeypatch.setattr(environment, "REPO_ROOT", tmp_path / "nowhere")
    assert environment.git_commit() is None
    monkeypatch.setenv("INFBENCH_GIT_COMMIT", "abc1234")  # a copy without .git names the commit it came from
    assert environment.git_commit() == "abc1234"
