"""The report: one self-contained HTML file (Jinja2 with autoescape, figures inlined as base64 PNG).

The page is a view of the tables: it computes nothing new. Tables are rendered by pandas' Styler with HTML
escaping on, and every other string goes through Jinja2's autoescape, so a model named like markup shows as
text.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
import yaml
from pandas.io.formats.style import Styler

from infbench import environment
from infbench.measure import gpu_busy, order

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "report" / "templates"
CELL_COLUMNS = ["model", "backend", "precision", "batch", "seq_len", "status", "median_ms", "ci_lo_ms",
                "ci_hi_ms", "p90_ms", "p99_ms", "cv", "n", "rounds", "between_round_cv", "stop_reason",
                "gpu_busy_share", "bound", "host_probe_ms", "sequences_per_s", "tokens_per_s",
                "accuracy_passed", "rel_l2", "max_abs", "cosine", "unstable", "prepare_s", "compile_s", "build_s",
                "engine_bytes", "graph_breaks", "recompiles", "fused_ops", "peak_bytes", "device_peak_bytes",
                "process_s", "overhead_s", "threads"]


def styled(frame: pd.DataFrame, precision: int = 3, highlight: str | None = None, mark: str | None = None) -> str:
    """An escaped HTML table (pandas Styler); rows failing ``highlight`` (a boolean column) are marked red,
    rows where ``mark`` (a boolean column) is true yellow.

    Cells carry no id unless styled (``cell_ids=False``): the ids are a fifth of a 200-cell page and nothing
    refers to them."""
    if frame.empty:
        return "<p class='empty'>(none)</p>"
    frame = frame.reset_index(drop=True)
    styler = Styler(frame, cell_ids=False).format(precision=precision, na_rep="–", escape="html", thousands=",")
    styler = styler.format_index(escape="html", axis=1).hide(axis="index")
    colours = pd.Series("", index=frame.index)
    if mark and mark in frame.columns:
        colours[flag(frame[mark])] = "background:#fff4d6"
    if highlight and highlight in frame.columns:
        colours[frame[highlight].astype("boolean").fillna(True) == False] = "background:#fde2e1"  # noqa: E712
    if (colours != "").any():
        styler = styler.apply(lambda row: [colours[row.name]] * len(row), axis=1)
    return styler.set_table_attributes('class="data"').to_html()


def flag(column: pd.Series) -> pd.Series:
    """A boolean column as read back from CSV (bools, or NaN where unknown) with unknown = False."""
    return column.astype("boolean").fillna(False).astype(bool)


def _inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def status_counts(cells: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in cells["status"].value_counts().sort_index().items()}


def accuracy_matrix(cells: pd.DataFrame) -> str:
    """rel. L2 vs fp32 eager per (backend, precision) × shape; failing cells red, unmeasured blank."""
    ok = cells[cells["status"] == "ok"]
    if ok.empty:
        return "<p class='empty'>(no measured cells)</p>"
    ok = ok.assign(row=ok["model"] + " · " + ok["backend"] + " · " + ok["precision"],
                   shape="b" + ok["batch"].astype(str) + " s" + ok["seq_len"].astype(str))
    order = ok.sort_values(["batch", "seq_len"])["shape"].unique()
    values = ok.pivot_table(index="row", columns="shape", values="rel_l2", aggfunc="first").reindex(columns=order)
    passed = ok.pivot_table(index="row", columns="shape", values="accuracy_passed", aggfunc="first").reindex(columns=order)
    colours = passed.map(lambda v: "" if pd.isna(v) else ("background:#fde2e1" if not bool(v) else "background:#e3f5e1"))
    styler = values.style.format("{:.1e}", na_rep="").apply(lambda _: colours, axis=None)
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    return styler.set_table_attributes('class="data"').to_html()


def ranges(cells: pd.DataFrame) -> dict[str, str]:
    """Min–max of what the GPU did across all cells (clock, temperature, power), for one line of the page."""
    out = {}
    for label, columns, unit in (("SM clock", ["sm_clock_before", "sm_clock_after"], "MHz"),
                                 ("temperature", ["temp_c_after"], "°C"), ("power", ["power_w_after"], "W")):
        present = [c for c in columns if c in cells.columns]
        values = pd.concat([pd.to_numeric(cells[c], errors="coerce") for c in present]).dropna() if present else pd.Series()
        if not values.empty:
            out[label] = f"{values.min():g}–{values.max():g} {unit}"
    return out


KEY_COLUMNS = ["model", "backend", "precision", "batch", "seq_len"]


def fusions_per_model(cells: pd.DataFrame) -> pd.DataFrame:
    """Which ONNX Runtime fusions each model's graphs got (one row per model, backend and precision): the
    fused-op counts and what is missing for the architecture (e.g. attention with relative position bias)."""
    columns = ["model", "backend", "precision", "fused_ops", "fusion"]
    if "fused_ops" not in cells:
        return pd.DataFrame(columns=columns)
    measured = cells[(cells["engine"] == "onnxruntime") & cells["fused_ops"].notna()]
    return measured.reindex(columns=columns).drop_duplicates(subset=["model", "backend", "precision"]).reset_index(drop=True)
VERDICT_COLUMNS = ["model", "batch", "seq_len", "verdict", "tie", "backend", "precision", "median_ms", "speedup",
                   "speedup_lo", "speedup_hi", "runner_up", "runner_up_ms", "runner_up_ratio", "runner_up_ratio_lo",
                   "runner_up_ratio_hi"]
ROUND_COLUMNS = [*KEY_COLUMNS, "median_ms", "ci_lo_ms", "ci_hi_ms", "interval_width_pct", "rounds",
                 "between_round_cv", "round_min_ms", "round_max_ms", "round_spread", "host_sensitivity",
                 "rounds_half_width", "between_run_half_width", "spread_cause"]
HOST_BOUND_COLUMNS = [*KEY_COLUMNS, "median_ms", "gpu_kernel_ms", "gpu_busy_share", "host_sensitivity",
                      "host_probe_ms", "host_probe_spread", "round_spread", "between_round_cv"]


def _present(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The listed columns that the table has, in that order (an older table lacks the newer ones)."""
    return frame[[c for c in columns if c in frame.columns]]


def verdict(best: pd.DataFrame) -> dict:
    """The verdict table, verdict text first and tie rows marked, and the ties listed for the page's text.

    A tie is the table's call (best.csv ``tie``: the runner-up's paired latency ratio has 1 in its interval);
    the page only makes it visible, so that no reader takes one of two indistinguishable numbers for a
    winner."""
    ties = best[flag(best["tie"])] if "tie" in best.columns else best.iloc[0:0]
    return {"table": styled(_present(best, VERDICT_COLUMNS), mark="tie"), "shapes": len(best),
            "ties": [{"model": r.model, "shape": f"b{r.batch} s{r.seq_len}", "verdict": r.verdict}
                     for r in ties.itertuples()]}


def _range_text(values: pd.Series) -> str:
    """"3" when every value is 3, "3–5" otherwise, "" when there are none (one line of text, not a table)."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return ""
    lo, hi = f"{values.min():g}", f"{values.max():g}"
    return lo if lo == hi else f"{lo}–{hi}"


def rounds_section(cells: pd.DataFrame, rounds: pd.DataFrame) -> dict:
    """Per measured cell: its latency, the interval a fresh round is expected in, how wide that is relative to
    the latency, and how far its own rounds spread; plus the round count and wall-time span for the text.

    The width in % of the median is the only arithmetic here: it turns two columns into the one number a
    reader compares across cells."""
    ok = cells[cells["status"] == "ok"]
    ok = ok.assign(interval_width_pct=100 * (ok["ci_hi_ms"] - ok["ci_lo_ms"]) / ok["median_ms"])
    span = pd.to_numeric(rounds.get("offset_s", pd.Series(dtype=float)), errors="coerce").max()
    return {"table": styled(_present(ok, ROUND_COLUMNS)), "count": _range_text(ok.get("rounds", pd.Series())),
            "span_s": None if pd.isna(span) else f"{span:.3g}"}


WIDE_COLUMNS = [*KEY_COLUMNS, "median_ms", "ci_lo_ms", "ci_hi_ms", "half_width_pct", "gpu_busy_share",
                "spread_cause", "spread_evidence", "round_min_ms", "round_max_ms", "host_sensitivity"]
GPU_BOUND_TARGET_PCT = 3.0  # issue 14's sharpness target for GPU-bound cells


ORDER_SHOWN = 3  # significant predictors of the level listed in the report


def level_order(gpu_bound: pd.DataFrame, rounds: pd.DataFrame) -> dict:
    """What the session timed before the slow level of the GPU-bound cells (``gpu_bound``: their cells.csv rows)
    whose rounds form two levels (infbench.measure.order, pooled over this run's windows): the cells it names,
    in the order named."""
    # tables written before rounds recorded their session and position have nothing to say here
    recorded = {*KEY_COLUMNS, "session", "round", "position", "median_ms"} <= set(rounds.columns)
    seen = order.windows(rounds if recorded else pd.DataFrame(), only=gpu_bound)
    shown = order.predictors(seen).query("significant").head(ORDER_SHOWN)
    return {"windows": len(seen), "cells": int(seen.groupby(["cell", "batch", "seq_len"]).ngroups) if len(seen) else 0,
            "low_share": None if seen.empty else f"{100 * seen['low'].mean():.0f}",
            "leaders": [{"cell": row.earlier_in_round, "after": f"{100 * row.low_share_after:.0f}",
                         "after_n": row.windows_after, "not_after": f"{100 * row.low_share_not_after:.0f}",
                         "not_after_n": row.windows_not_after, "p": f"{row.p_value:.1g}"} for row in shown.itertuples()]}


def wide_gpu_bound_section(cells: pd.DataFrame, rounds: pd.DataFrame | None = None) -> dict:
    """The GPU-bound cells whose interval reaches beyond +-3 % of the median, each with the named cause of its
    width (infbench.measure.spread, through cells.csv), and the count per cause: a GPU-bound latency is meant
    to be the GPU's own, so where its interval is wide the reader is told what moved. With the rounds, also
    what the session timed before the slow level of the two-level cells (``level_order``)."""
    bound = cells.get("bound", pd.Series(index=cells.index, dtype=object))  # as gpu_busy_section reads it
    gpu_bound = cells[(cells["status"] == "ok") & (bound == "gpu-bound")]
    half = 100 * pd.concat([gpu_bound["ci_hi_ms"] / gpu_bound["median_ms"] - 1,
                            1 - gpu_bound["ci_lo_ms"] / gpu_bound["median_ms"]], axis=1).max(axis=1)
    wide = gpu_bound.assign(half_width_pct=half)[half > GPU_BOUND_TARGET_PCT].sort_values("half_width_pct")
    # tables written before the causes were: every wide cell counts as "not recorded", and is still listed
    causes = wide.get("spread_cause", pd.Series(index=wide.index, dtype=object)).fillna("not recorded").value_counts()
    return {"gpu_bound_n": len(gpu_bound), "within_n": int((half <= GPU_BOUND_TARGET_PCT).sum()),
            "median_pct": None if half.empty else f"{half.median():.1f}", "target_pct": f"{GPU_BOUND_TARGET_PCT:g}",
            "causes": [{"cause": name, "n": int(n)} for name, n in causes.items()],
            "table": styled(_present(wide, WIDE_COLUMNS)),
            "order": level_order(gpu_bound, rounds if rounds is not None else pd.DataFrame())}


def gpu_busy_section(cells: pd.DataFrame) -> dict:
    """Whether any cell has a GPU busy share, and the host-bound cells beside their host probe and round
    spread: a host-bound cell's latency moves with the host CPU, and those columns show whether it did."""
    share = pd.to_numeric(cells.get("gpu_busy_share", pd.Series(dtype=float)), errors="coerce")
    host_bound = cells[cells.get("bound", pd.Series(index=cells.index, dtype=object)) == "host-bound"]
    return {"measured": bool(share.notna().any()), "host_bound": styled(_present(host_bound, HOST_BOUND_COLUMNS)),
            "host_bound_n": len(host_bound), "note": gpu_busy.HOST_BOUND_NOTE,
            "gpu_bound_from": gpu_busy.GPU_BOUND_FROM, "host_bound_below": gpu_busy.HOST_BOUND_BELOW}


def render(tables: dict[str, pd.DataFrame], figures: dict[str, Path], config: dict, out: Path) -> str:
    cells = tables["cells"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    not_ok = cells[cells["status"] != "ok"][[*KEY_COLUMNS, "status", "reason", "log"]]
    unstable = cells[cells["unstable"].astype("boolean").fillna(False)] if "unstable" in cells else cells.iloc[0:0]
    resources = cells[cells["status"] == "ok"][[c for c in [*KEY_COLUMNS, "device_peak_bytes", "peak_bytes",
                                                            "sm_clock_before", "sm_clock_after", "temp_c_after",
                                                            "power_w_after"] if c in cells.columns]]
    cost = tables["cost"]
    cost_by_backend = (cost.groupby(["model", "backend", "precision"], as_index=False)
                       .agg(setup_s=("setup_s", "median"), compile_s=("compile_s", "median"),
                            build_s=("build_s", "median"), break_even_min=("break_even_requests", "min"),
                            break_even_max=("break_even_requests", "max"))) if not cost.empty else cost
    images = sorted(tables["environment"]["container"].dropna().astype(str).unique()) if "container" in tables["environment"] else []
    html = env.get_template("index.html.j2").render(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        git_commit=environment.git_commit(),
        baseline=config["baseline"],
        counts=status_counts(cells),
        total=len(cells),
        devices=sorted(cells["device"].dropna().astype(str).unique()),
        gpu_ranges=ranges(cells),
        remote_code=sorted(name for name, model in config.get("models", {}).items() if model.get("trust_remote_code")),
        verdict=verdict(tables["best"]),
        rounds=rounds_section(cells, tables["rounds"]),
        wide=wide_gpu_bound_section(cells, tables["rounds"]),
        gpu_busy=gpu_busy_section(cells),
        speedup=styled(tables["speedup"], highlight="accuracy_passed"),
        accuracy=accuracy_matrix(cells),
        accuracy_cells=styled(cells[cells["status"] == "ok"][[c for c in [*KEY_COLUMNS, "accuracy_passed", "tolerance", "rel_l2", "max_abs", "rel_l2_fp64", "max_abs_fp64", "cosine"] if c in cells.columns]], precision=6, highlight="accuracy_passed"),
        fusions=styled(fusions_per_model(cells)),
        cost=styled(cost_by_backend, precision=1),
        cost_cells=styled(cost, precision=2),
        roofline=styled(tables["roofline"], precision=3),
        resources=styled(resources),
        unstable=styled(unstable[[c for c in [*KEY_COLUMNS, "cv", "unstable_why", "median_ms"] if c in unstable.columns]]),
        cells=styled(cells[[c for c in CELL_COLUMNS if c in cells.columns]], highlight="accuracy_passed"),
        not_ok=styled(not_ok),
        environment=styled(tables["environment"]),
        images=images,
        figures={name: _inline_png(path) for name, path in figures.items()},
        config_yaml=yaml.safe_dump(config, sort_keys=False),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return html
