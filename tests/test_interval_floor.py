"""The hindsight floor under published intervals (scripts.interval_floor): its two widths on known values, on
simulated windows, the per-cell table and its summary, both targets at once per re-measurement (cut to the
threshold, and the best bands of that width in hindsight), and the one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scripts import interval_floor as floor


def test_widths_on_known_values():
    values = [1.0] * 9 + [2.0]
    assert floor.centred_half(values, 1.0, 0.90) == 0.0  # nine of ten sit on the centre
    assert floor.centred_half(values, 1.0, 0.95) == pytest.approx(1.0)  # the tenth needs [0.5, 2]
    assert floor.shortest_half(values, 0.90) == 0.0
    assert floor.shortest_half([1.0, 1.21], 0.95) == pytest.approx(0.1)  # log width 2 log 1.1, halved
    # centred on a median off the values' middle, the interval must reach the far side
    assert floor.centred_half([1.0, 1.1], 1.0, 0.95) > floor.shortest_half([1.0, 1.1], 0.95)


def test_floor_of_lognormal_windows_is_their_quantile():
    rng = np.random.default_rng(7)
    sigma = 0.02
    windows = np.exp(rng.normal(0.0, sigma, 20000))
    z95 = 1.959964
    assert floor.centred_half(windows, 1.0, 0.95) == pytest.approx(math.expm1(z95 * sigma), rel=0.05)
    assert floor.shortest_half(windows, 0.95) == pytest.approx(math.expm1(z95 * sigma), rel=0.05)
    # two levels 10 % apart, half the windows on each: no interval holding 95 % is narrower than the gap
    levels = np.concatenate([windows[:10000] * 0.66, windows[10000:] * 0.73])
    assert floor.shortest_half(levels, 0.95) > math.expm1(math.log(0.73 / 0.66) / 2)


def _cells(rows):
    base = {"model": "m", "engine": "e", "status": "ok"}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_table_and_summary_by_class():
    published = _cells([
        {"backend": "graph", "precision": "fp16", "batch": 1, "seq_len": 16, "bound": "gpu-bound",
         "median_ms": 1.0, "ci_lo_ms": 1 / 1.03, "ci_hi_ms": 1.03},
        {"backend": "eager", "precision": "fp16", "batch": 1, "seq_len": 16, "bound": "host-bound",
         "median_ms": 2.0, "ci_lo_ms": 1.0, "ci_hi_ms": 4.0},
        {"backend": "gone", "precision": "fp16", "batch": 1, "seq_len": 16, "bound": "gpu-bound",
         "median_ms": 1.0, "ci_lo_ms": 0.9, "ci_hi_ms": 1.1, "status": "failed"}])
    key = {"model": "m", "engine": "e", "precision": "fp16", "batch": 1, "seq_len": 16}
    windows = pd.DataFrame([{**key, "backend": "graph", "median_ms": v} for v in (0.99, 1.0, 1.01, 1.10)]
                           + [{**key, "backend": "eager", "median_ms": v} for v in (1.5, 2.5)])
    medians = pd.DataFrame([{**key, "backend": "graph", "median_ms": v} for v in (1.0, 1.02)])
    table = floor.floor_table(published, windows, medians).set_index("backend")
    assert set(table.index) == {"graph", "eager"}  # the failed cell is not judged
    assert table.loc["graph", "held"] == 0.75 and table.loc["eager", "held"] == 1.0
    assert table.loc["graph", "published_half"] == pytest.approx(0.03)
    assert table.loc["graph", "window_centred_95"] == pytest.approx(0.10)  # the 1.10 window sets it
    assert table.loc["graph", "median_centred_95"] == pytest.approx(0.02)
    assert math.isnan(table.loc["eager", "median_shortest_90"])  # no run medians of it
    brief = floor.summary(table.reset_index()).set_index("bound")
    assert brief.loc["gpu-bound", "window_centred_95_over"] == "1/1"
    assert brief.loc["gpu-bound", "published_half_over"] == "0/1"
    assert brief.loc["gpu-bound", "windows_held"] == 0.75
    assert "mixed" not in brief.index
    cpu = floor.floor_table(published.drop(columns="bound"), windows, medians)  # a CPU run: no busy share
    assert set(cpu["bound"]) == {"host-bound"}


def _two_level_case():
    """Two GPU-bound replays whose re-measurements sit on two levels 10 % apart: re-measurement "a" on the low
    level of both, "b" on the high one; and a host-bound cell both hold."""
    published = _cells([
        {"backend": name, "precision": "fp16", "batch": 1, "seq_len": 16, "bound": "gpu-bound",
         "median_ms": 1.0, "ci_lo_ms": 0.9, "ci_hi_ms": 1.2} for name in ("graph", "replay")]
        + [{"backend": "eager", "precision": "fp16", "batch": 1, "seq_len": 16, "bound": "host-bound",
            "median_ms": 2.0, "ci_lo_ms": 1.0, "ci_hi_ms": 4.0}])
    key = {"model": "m", "engine": "e", "precision": "fp16", "batch": 1, "seq_len": 16}

    def remeasure(level):
        return pd.DataFrame([{**key, "backend": name, "median_ms": level} for name in ("graph", "replay")]
                            + [{**key, "backend": "eager", "median_ms": 2.5}])
    return published, {"a": remeasure(1.0), "b": remeasure(1.1)}


def test_both_targets_at_once_per_remeasurement():
    published, sources = _two_level_case()
    table = floor.cap_table(published, sources, threshold=0.03).set_index("source")
    assert table.loc["a", "held"] == 3 and table.loc["b", "held"] == 3  # the published intervals hold both levels
    # cut to ±3 % around the published median (1.0), the high level falls out; the host-bound cell stays
    assert table.loc["a", "held_capped"] == 3 and table.loc["b", "held_capped"] == 1
    # the best ±3 % bands, chosen in hindsight: one cell's band on each level, so neither re-measurement loses both
    assert table.loc["a", "held_best"] == 2 and table.loc["b", "held_best"] == 2
    assert table.loc["b", "gpu_bound_held_best"] == 1 and table.loc["b", "gpu_bound_cells"] == 2
    # wide enough for both levels, the best bands hold everything
    wide = floor.cap_table(published, sources, threshold=0.06).set_index("source")
    assert list(wide["held_best"]) == [3, 3]


def test_cap_table_written_per_harness_pass(tmp_path, capsys):
    published, sources = _two_level_case()
    published.to_csv(tmp_path / "cells.csv", index=False)
    folder = tmp_path / "machine-k"
    folder.mkdir()
    passes = [part.assign(**{"pass": number, "status": "ok"}) for number, part in enumerate(sources.values())]
    pd.concat(passes).to_csv(folder / "measured.csv", index=False)
    floor.main(["--published", str(tmp_path), "--measured", str(folder / "measured.csv"),
                "--out", str(tmp_path / "out" / "floor.csv")])
    capped = pd.read_csv(tmp_path / "out" / "floor_cap.csv").set_index("source")
    assert list(capped.index) == ["machine-k pass 0", "machine-k pass 1"]  # labelled by its folder
    assert list(capped["held_capped"]) == [3, 1]
    assert (tmp_path / "out" / "floor_summary.csv").is_file()
    assert "held_best" in capsys.readouterr().out


@pytest.mark.parametrize("argv, key", [
    (["--published", "nowhere", "--measured", "x.csv", "--out", "o.csv"], "--published"),
    (["--published", "PUB", "--run", "no-label", "--out", "o.csv"], "--run"),
    (["--published", "PUB", "--measured", "missing.csv", "--out", "o.csv"], "--measured"),
    (["--published", "PUB", "--out", "o.csv"], "--run or --measured"),
    (["--published", "PUB", "--measured", "x=PUB/cells.csv", "--measured", "x=PUB/cells.csv", "--out", "o.csv"],
     "--measured"),
    (["--published", "PUB", "--measured", "=PUB/cells.csv", "--out", "o.csv"], "--measured"),
])
def test_bad_arguments_name_the_key(tmp_path, capsys, argv, key):
    (tmp_path / "cells.csv").write_text("status\n")
    argv = [a.replace("PUB", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as stop:
        floor.main(argv)
    assert stop.value.code == 2
    assert key in capsys.readouterr().err.strip().splitlines()[-1]
