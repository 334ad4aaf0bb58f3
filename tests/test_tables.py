import numpy as np
import pandas as pd
import pytest

from infbench import records, report, tables
from infbench.measure.stats import summarize, summarize_rounds

ROUNDS, PER_ROUND = 5, 40
# the host's drift per round, shared by every cell of a shape session (what paired rounds cancel)
DRIFT = [1.0, 1.3, 0.9, 1.2, 1.05]


def measured(backend, precision, median, batch=1, seq_len=8, passed=True, seed=0, model="m"):
    rng = np.random.default_rng(seed)
    rounds = []
    for index in range(ROUNDS):
        samples = list(median * DRIFT[index] * (1 + rng.normal(0, 0.01, PER_ROUND)))
        rounds.append({"index": index, "started_at": "2026-01-01T00:00:00+00:00", "offset_s": 3.0 * index,
                       "position": 0, "samples_ms": samples, **summarize(samples),
                       "window": {"stop_reason": "converged", "clock": "test", "warmup_seconds": 0.1,
                                  "loop_seconds": 0.2},
                       "host": {"probe_ms": 2.0 * DRIFT[index], "cpu_mhz": 2000.0, "steal_pct": 0.0, "load1": 0.5}})
    record = records.new_record({"model": model, "backend": backend, "engine": "torch", "precision": precision,
                                 "batch": batch, "seq_len": seq_len}, {}, None)
    record["timing"] = {**summarize_rounds([r["samples_ms"] for r in rounds]), "rounds": rounds,
                        "session": f"{model}-{batch}-{seq_len}"}
    record["throughput"] = {"sequences_per_s": batch / median * 1e3, "tokens_per_s": batch * seq_len / median * 1e3}
    record["accuracy"] = {"passed": passed, "rel_l2": 1e-6 if passed else 0.5, "finite": True}
    record["env"] = {"torch": "2.13.0", "python": "3.11"}
    record["device"] = {"name": "cpu-x"}
    return records.finish(record, "ok")


def failed(backend, precision, status="unsupported", reason="no bf16 here", batch=1, seq_len=8):
    record = records.new_record({"model": "m", "backend": backend, "engine": "onnxruntime", "precision": precision,
                                 "batch": batch, "seq_len": seq_len}, {}, "logs/x.log")
    return records.finish(record, status, reason)


BASELINE = {"backend": "eager", "precision": "fp32"}


@pytest.fixture
def recs():
    return [
        measured("eager", "fp32", 10.0, seed=1),
        measured("fast", "fp32", 5.0, seed=2),
        measured("wrong", "fp32", 1.0, passed=False, seed=3),
        measured("same", "fp32", 10.0, seed=4),
        failed("ort", "bf16"),
        measured("eager", "fp32", 20.0, seq_len=16, seed=5),
        measured("fast", "fp32", 25.0, seq_len=16, seed=6),
    ]


def test_cells_has_one_row_per_record_whatever_the_status(recs):
    frame = tables.cells(recs)
    assert len(frame) == len(recs)
    row = frame[frame["backend"] == "ort"].iloc[0]
    assert row["status"] == "unsupported" and row["reason"] == "no bf16 here"
    assert pd.isna(row["median_ms"])


def test_samples_are_kept_for_measured_cells_only(recs):
    frame = tables.samples(recs)
    assert len(frame) == ROUNDS * PER_ROUND * 6
    assert set(frame["backend"]) == {"eager", "fast", "wrong", "same"}
    assert sorted(frame["round"].unique()) == list(range(ROUNDS))


def test_rounds_table_has_one_row_per_round_with_the_host_state(recs):
    frame = tables.rounds(recs)
    assert len(frame) == ROUNDS * 6
    eager = frame[(frame["backend"] == "eager") & (frame["seq_len"] == 8)].sort_values("round")
    assert eager["host_probe_ms"].tolist() == pytest.approx([2.0 * d for d in DRIFT])
    assert eager["session"].nunique() == 1


def test_speedup_vs_baseline_with_ci(recs):
    frame = tables.speedups(recs, BASELINE).set_index(["backend", "seq_len"])
    assert frame.loc[("eager", 8), "speedup"] == pytest.approx(1.0)
    assert not frame.loc[("eager", 8), "significant"]
    fast = frame.loc[("fast", 8)]
    assert fast["speedup"] == pytest.approx(2.0, rel=0.02)
    assert fast["speedup_lo"] < 2.0 < fast["speedup_hi"] and fast["significant"]
    # paired in time: the 30 % host drift between rounds cancels in the ratio
    assert fast["method"] == "paired rounds" and fast["paired_rounds"] == ROUNDS
    assert fast["speedup_hi"] / fast["speedup_lo"] < 1.05
    assert not frame.loc[("same", 8), "significant"]
    slower = frame.loc[("fast", 16)]
    assert slower["speedup"] < 1 and slower["significant"]
    assert ("ort", 8) not in frame.index  # no number for a cell that was not measured


def test_best_per_shape_skips_cells_that_fail_accuracy(recs):
    best = tables.best_per_shape(recs, tables.speedups(recs, BASELINE)).set_index("seq_len")
    assert best.loc[8, "backend"] == "fast"  # 'wrong' is faster but fails the accuracy check
    assert best.loc[16, "backend"] == "eager"
    assert not best.loc[8, "tie"] and best.loc[8, "verdict"] == "fast fp32"
    assert best.loc[8, "runner_up_ratio"] == pytest.approx(2.0, rel=0.02)


def test_verdict_names_both_when_the_fastest_two_cannot_be_told_apart():
    recs = [measured("eager", "fp32", 10.0, seed=1), measured("a", "fp16", 5.0, seed=2),
            measured("b", "fp16", 5.0, seed=3), measured("c", "fp16", 7.0, seed=4)]
    best = tables.best_per_shape(recs, tables.speedups(recs, BASELINE)).iloc[0]
    assert best["tie"]
    assert "≈" in best["verdict"] and "a fp16" in best["verdict"] and "b fp16" in best["verdict"]
    assert best["runner_up_ratio_lo"] <= 1 <= best["runner_up_ratio_hi"]


def test_environments_are_counted(recs):
    env = tables.environments(recs)
    assert env["cells"].sum() == len(recs)
    assert len(env) == 2  # the unsupported record has no env: it shows as its own row, not merged


def test_write_and_read_all(tmp_path, recs):
    paths = []
    for i, record in enumerate(recs):
        path = tmp_path / "cells" / f"{i}.json"
        records.write(record, path)
        paths.append(path)
    written = tables.write_all(paths, BASELINE, tmp_path / "tables")
    back = tables.read_all(tmp_path / "tables")
    assert set(back) == set(tables.TABLES)
    assert len(back["cells"]) == len(written["cells"]) == len(recs)


def test_report_escapes_every_string(tmp_path, recs):
    evil = "<script>alert(1)</script>"
    recs = [measured("eager", "fp32", 10.0, model=evil), failed("ort", "bf16", reason=evil)]
    frames = tables.build(recs, BASELINE)
    png = tmp_path / "f.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    from infbench.figures import FIGURES

    html = report.render(frames, {name: png for name in FIGURES},
                         {"baseline": BASELINE, "models": {evil: {}}}, tmp_path / "index.html")
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_unlike_environments_are_refused_or_kept_apart(tmp_path, recs):
    other = [measured("eager", "fp32", 30.0, seed=7), measured("fast", "fp32", 3.0, seed=8)]
    for record in other:
        record["env"]["torch"] = "2.11.0"
        record["device"]["name"] = "gpu-y"
    paths = []
    for index, record in enumerate(recs + other):
        paths.append(tmp_path / f"{index}.json")
        records.write(record, paths[-1])
    with pytest.raises(tables.MixedEnvironments) as error:
        tables.write_all(paths, BASELINE, tmp_path / "tables")
    message = str(error.value)
    assert "2 environments" in message and "torch: ['2.11.0', '2.13.0']" in message and "\n" not in message
    assert not (tmp_path / "tables").exists()  # nothing half-written
    frames = tables.write_all(paths, BASELINE, tmp_path / "tables", mix_environments=True)
    speedup = frames["speedup"]
    assert speedup["environment_id"].nunique() == 2
    fast = speedup[(speedup["backend"] == "fast") & (speedup["seq_len"] == 8)].set_index("environment_id")["speedup"]
    assert sorted(fast.round(1)) == [2.0, 10.0]  # each vs the baseline of its own environment


def test_timing_cost_counts_the_timing_phase_across_overlapping_sessions():
    """Sessions side by side: the phase is the union's span, measuring the windows' sum, their ratio the share."""
    from scripts.timing_cost import summary

    from datetime import datetime, timezone

    def record(session, starts, status="ok"):
        rounds = [{"started_unix": s, "started_at": datetime.fromtimestamp(s, timezone.utc).isoformat(timespec="seconds"),
                   "window": {"warmup_seconds": 0.2, "loop_seconds": 0.8}} for s in starts]
        return {"status": status, "timing": {"session": session, "rounds": rounds},
                "prepare": {"seconds": 5.0}, "cost": {"process_s": 30.0, "host_wait_s": 4.0}}

    run = [record("a", [1e9 + 100, 1e9 + 103]), record("b", [1e9 + 101, 1e9 + 104]), record("a", [1e9 + 102]),
           record("b", [1e9 + 105], status="failed")]  # failed after timing: its window still took the GPU
    earlier = [record("old", [1e9 - 86400])]
    got = summary(run + earlier + [{"status": "unavailable", "timing": {}}],
                  since=datetime.fromtimestamp(1e9, timezone.utc).isoformat(timespec="seconds"))
    assert got["sessions"] == 2 and got["cells"] == 4 and got["windows"] == 6
    assert got["timing_phase_s"] == pytest.approx(6.0) and got["measuring_s"] == pytest.approx(6.0)
    assert got["measuring_share"] == pytest.approx(1.0) and got["prepare_s_sum"] == pytest.approx(20.0)
    assert summary(run + earlier)["timing_phase_s"] > 86400  # without --since, the earlier run stretches it
