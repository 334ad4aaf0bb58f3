"""The report: one self-contained HTML file (Jinja2 with autoescape, figures inlined as base64 PNG).

The page is a view of the tables, answer first: what to use per shape group, by how much, and how sure
(``infbench.answer``), then the tables and figures that back it, then diagnostics behind ``<details>``. It
computes no new statistic. Tables are rendered by pandas' Styler with HTML escaping on, and every other string
goes through Jinja2's autoescape, so a model named like markup shows as text.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2
import pandas as pd
import yaml
from pandas.io.formats.style import Styler

from infbench import answer, environment, names
from infbench.answer import flag
from infbench.measure import gpu_busy, order

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "report" / "templates"
KEY_COLUMNS = ["model", "backend", "precision", "batch", "seq_len"]
GIB = 2**30

# Column headers in words with units, one place for every table the page shows (CSV names stay as they are)
HEADERS = {
    "model": "Model", "display": "Backend", "backend": "Config name", "precision": "Precision", "batch": "Batch",
    "seq_len": "Seq len", "status": "Status", "reason": "Reason", "median_ms": "Latency (ms)",
    "ci_lo_ms": "95 % low (ms)", "ci_hi_ms": "95 % high (ms)", "interval_pct": "Interval (± %)",
    "rounds": "Rounds", "between_round_cv": "Round CV", "round_min_ms": "Fastest round (ms)",
    "round_max_ms": "Slowest round (ms)", "spread_cause": "Why it spreads", "gpu_busy_share": "GPU busy share",
    "bound": "Bound by", "host_sensitivity": "Host sensitivity", "host_probe_ms": "Host probe (ms)",
    "host_probe_spread": "Host probe max/min", "round_spread": "Round max/min", "gpu_kernel_ms": "GPU busy (ms)",
    "sequences_per_s": "Sequences/s", "tokens_per_s": "Tokens/s", "accuracy_passed": "Accurate",
    "rel_l2": "Rel. L2 vs fp32", "max_abs": "Max abs vs fp32", "rel_l2_fp64": "Rel. L2 vs fp64",
    "max_abs_fp64": "Max abs vs fp64", "cosine": "Cosine", "tolerance": "Tolerance", "unstable_why": "Why flagged",
    "cv": "Iteration CV", "setup_s": "Setup (s)", "compile_s": "Compile (s)", "build_s": "Engine build (s)",
    "saved_ms_per_request": "Saved per request (ms)", "break_even_requests": "Break-even (requests)",
    "flops": "FLOPs", "min_bytes": "Minimum bytes", "floor_ms": "Floor (ms)", "pct_of_floor": "% of floor",
    "peak_raised": "Peak raised from", "fused_ops": "Fused ops", "fusion": "Not fused",
    "backend_peak_gib": "Peak memory (GiB)", "prompt_len": "Prompt", "new_tokens": "New tokens",
    "tpot_ms": "Per token (ms)", "tpot_lo_ms": "95 % low (ms)", "tpot_hi_ms": "95 % high (ms)",
    "ttft_ms": "First token (ms)", "first_step_ms": "First step (ms)", "last_step_ms": "Last step (ms)",
    "tpot_over_floor": "× floor", "kernels_per_token": "Kernels per token", "busy_share": "Device busy share",
    "cache": "Cache", "cache_allocated_len": "Allocated length",
    "teacher_forced_top1": "Top-1 agreement", "logits_rel_err": "Logits rel. error", "first_divergence": "Leaves reference at",
    "prepare_s": "Setup (s)", "recompiles": "Recompiles", "backend_held_gib": "Held memory (GiB)", "memory_method": "Measured by",
    "device_peak_gib": "Session device peak (GiB)", "peak_gib": "Session host peak (GiB)",
    "sm_clock_before": "SM clock before (MHz)", "sm_clock_after": "SM clock after (MHz)",
    "temp_c_after": "Temperature (°C)", "power_w_after": "Power (W)", "cells": "Cells", "backends": "Backends",
}
FORMATS = {"tpot_ms": "{:.3g}", "tpot_lo_ms": "{:.3g}", "tpot_hi_ms": "{:.3g}", "ttft_ms": "{:.3g}",
           "first_step_ms": "{:.3g}", "last_step_ms": "{:.3g}", "tpot_over_floor": "{:.2f}", "kernels_per_token": "{:.0f}", "busy_share": "{:.2f}", "prepare_s": "{:.1f}",
           "teacher_forced_top1": "{:.3f}", "logits_rel_err": "{:.1e}", "first_divergence": "{:.0f}",
           "cache_allocated_len": "{:.0f}", "prompt_len": "{:.0f}", "new_tokens": "{:.0f}", "recompiles": "{:.0f}",
           "median_ms": "{:.3g}", "ci_lo_ms": "{:.3g}", "ci_hi_ms": "{:.3g}", "round_min_ms": "{:.3g}",
           "round_max_ms": "{:.3g}", "gpu_kernel_ms": "{:.3g}", "host_probe_ms": "{:.3g}", "floor_ms": "{:.3g}",
           "interval_pct": "{:.1f}", "pct_of_floor": "{:.0f}", "between_round_cv": "{:.3f}", "cv": "{:.3f}",
           "gpu_busy_share": "{:.2f}", "host_sensitivity": "{:.2f}", "host_probe_spread": "{:.2f}",
           "round_spread": "{:.2f}", "rel_l2": "{:.1e}", "max_abs": "{:.1e}", "rel_l2_fp64": "{:.1e}",
           "max_abs_fp64": "{:.1e}", "cosine": "{:.6f}", "tolerance": "{:g}", "sequences_per_s": "{:,.0f}",
           "tokens_per_s": "{:,.0f}", "setup_s": "{:.1f}", "compile_s": "{:.1f}", "build_s": "{:.1f}",
           "saved_ms_per_request": "{:.3g}", "break_even_requests": "{:,.0f}", "flops": "{:.3g}",
           "min_bytes": "{:.3g}", "backend_peak_gib": "{:.2f}", "backend_held_gib": "{:.2f}",
           "device_peak_gib": "{:.2f}", "peak_gib": "{:.2f}", "rounds": "{:.0f}", "batch": "{:.0f}",
           "seq_len": "{:.0f}", "sm_clock_before": "{:.0f}", "sm_clock_after": "{:.0f}", "temp_c_after": "{:.0f}",
           "power_w_after": "{:.0f}", "cells": "{:.0f}"}


def yes_no(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return "yes" if str(value).lower() in ("true", "1", "1.0") else "no"


def styled(frame: pd.DataFrame, highlight: str | None = None, mark: str | None = None) -> str:
    """An escaped HTML table (pandas Styler) with headers in words (HEADERS) and numbers formatted by type
    (FORMATS); rows whose ``highlight`` column is false are marked red, rows whose ``mark`` column is true
    yellow. Booleans read "yes"/"no". Cells carry no id (``cell_ids=False``): nothing refers to them."""
    if frame.empty:
        return "<p class='empty'>(none)</p>"
    frame = frame.reset_index(drop=True)
    colours = pd.Series("", index=frame.index)
    if mark and mark in frame.columns:
        colours[flag(frame[mark])] = "background:#fff4d6"
    if highlight and highlight in frame.columns:
        colours[frame[highlight].astype("boolean").fillna(True) == False] = "background:#fde2e1"  # noqa: E712
    shown = frame.copy()
    for column in shown.columns:
        if column in ("accuracy_passed", "tie", "unstable", "significant"):
            shown[column] = shown[column].map(yes_no)
    styler = Styler(shown.rename(columns=HEADERS), cell_ids=False)
    styler = styler.format(precision=3, na_rep="–", escape="html", thousands=",")
    for column, fmt in FORMATS.items():
        if column in shown.columns:
            styler = styler.format(fmt, subset=[HEADERS.get(column, column)], na_rep="–")
    styler = styler.format_index(escape="html", axis=1).hide(axis="index")
    text = [HEADERS.get(c, c) for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])]
    if text:  # words read from the left, numbers line up on the right
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    if (colours != "").any():
        styler = styler.apply(lambda row: [colours[row.name]] * len(row), axis=1)
    return styler.set_table_attributes('class="data"').to_html()


def _inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _present(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The listed columns that the table has, in that order (an older table lacks the newer ones)."""
    return frame[[c for c in columns if c in frame.columns]]


def _gib(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Byte columns as GiB columns (``{bytes column: GiB column}``), where present."""
    out = frame.copy()
    for source, target in columns.items():
        if source in out.columns:
            out[target] = pd.to_numeric(out[source], errors="coerce") / GIB
    return out


def accuracy_matrix(cells: pd.DataFrame) -> str:
    """rel. L2 vs fp32 eager per (backend, precision) × shape; failing cells red, unmeasured blank."""
    ok = cells[cells["status"] == "ok"]
    if ok.empty:
        return "<p class='empty'>(no measured cells)</p>"
    ok = ok.assign(row=ok["display"] + " · " + ok["precision"],
                   shape="b" + ok["batch"].astype(str) + " s" + ok["seq_len"].astype(str))
    if ok["model"].nunique() > 1:
        ok["row"] = ok["model"] + " · " + ok["row"]
    columns = ok.sort_values(["batch", "seq_len"])["shape"].unique()
    values = ok.pivot_table(index="row", columns="shape", values="rel_l2", aggfunc="first").reindex(columns=columns)
    passed = ok.pivot_table(index="row", columns="shape", values="accuracy_passed", aggfunc="first").reindex(columns=columns)
    colours = passed.map(lambda v: "" if pd.isna(v) else ("background:#fde2e1" if not bool(v) else "background:#e3f5e1"))
    styler = values.style.format("{:.1e}", na_rep="").apply(lambda _: colours, axis=None)
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    return styler.set_table_attributes('class="data"').to_html()


def ranges(cells: pd.DataFrame) -> dict[str, str]:
    """Min–max of what the GPU did across all cells (clock, temperature, power), rounded for one line."""
    out = {}
    for label, columns, unit in (("SM clock", ["sm_clock_before", "sm_clock_after"], "MHz"),
                                 ("temperature", ["temp_c_after"], "°C"), ("power", ["power_w_after"], "W")):
        present = [c for c in columns if c in cells.columns]
        values = pd.concat([pd.to_numeric(cells[c], errors="coerce") for c in present]).dropna() if present else pd.Series()
        if not values.empty:
            out[label] = f"{values.min():.0f}–{values.max():.0f} {unit}"
    return out


def fusions_per_model(cells: pd.DataFrame) -> pd.DataFrame:
    """Which ONNX Runtime fusions each model's graphs got (one row per model, backend and precision): the
    fused-op counts and what is missing for the architecture (e.g. attention with relative position bias)."""
    columns = ["model", "display", "precision", "fused_ops", "fusion"]
    if "fused_ops" not in cells:
        return pd.DataFrame(columns=columns)
    measured = cells[(cells["engine"] == "onnxruntime") & cells["fused_ops"].notna()]
    return measured.reindex(columns=columns).drop_duplicates(subset=["model", "display", "precision"]).reset_index(drop=True)


ROUND_COLUMNS = ["model", "display", "precision", "batch", "seq_len", "median_ms", "ci_lo_ms", "ci_hi_ms",
                 "interval_pct", "rounds", "between_round_cv", "round_min_ms", "round_max_ms", "spread_cause"]
HOST_BOUND_COLUMNS = ["model", "display", "precision", "batch", "seq_len", "median_ms", "gpu_kernel_ms",
                      "gpu_busy_share", "host_sensitivity", "host_probe_ms", "host_probe_spread", "round_spread"]
CELL_COLUMNS = ["model", "display", "precision", "batch", "seq_len", "status", "median_ms", "ci_lo_ms", "ci_hi_ms",
                "rounds", "gpu_busy_share", "bound", "sequences_per_s", "tokens_per_s", "accuracy_passed",
                "backend_peak_gib", "setup_s"]


def rounds_section(cells: pd.DataFrame, rounds: pd.DataFrame) -> dict:
    """Per measured cell: its latency, its interval and how wide that is, how far its own rounds spread and
    why; plus the round count and wall-time span for the text."""
    ok = cells[cells["status"] == "ok"]
    ok = ok.assign(interval_pct=100 * answer.half_width(ok))
    span = pd.to_numeric(rounds.get("offset_s", pd.Series(dtype=float)), errors="coerce").max()
    counts = pd.to_numeric(ok.get("rounds", pd.Series(dtype=float)), errors="coerce").dropna()
    count = "" if counts.empty else (f"{counts.min():.0f}" if counts.min() == counts.max()
                                     else f"{counts.min():.0f}–{counts.max():.0f}")
    return {"table": styled(_present(ok, ROUND_COLUMNS)), "count": count,
            "span_s": None if pd.isna(span) else f"{span:.0f}", "order": level_order(cells, rounds)}


ORDER_SHOWN = 3  # significant predictors of the level listed in the report


def level_order(cells: pd.DataFrame, rounds: pd.DataFrame) -> dict:
    """What the session timed before the slow level of the GPU-bound cells whose rounds form two levels
    (infbench.measure.order, pooled over this run's windows): the cells it names, in the order named."""
    bound = cells.get("bound", pd.Series(index=cells.index, dtype=object))
    gpu_bound = cells[(cells["status"] == "ok") & (bound == "gpu-bound")]
    # tables written before rounds recorded their session and position have nothing to say here
    recorded = {*KEY_COLUMNS, "session", "round", "position", "median_ms"} <= set(rounds.columns)
    seen = order.windows(rounds if recorded else pd.DataFrame(), only=gpu_bound)
    shown = order.predictors(seen).query("significant").head(ORDER_SHOWN)
    return {"windows": len(seen), "cells": int(seen.groupby(["cell", "batch", "seq_len"]).ngroups) if len(seen) else 0,
            "low_share": None if seen.empty else f"{100 * seen['low'].mean():.0f}",
            "leaders": [{"cell": row.earlier_in_round, "after": f"{100 * row.low_share_after:.0f}",
                         "after_n": row.windows_after, "not_after": f"{100 * row.low_share_not_after:.0f}",
                         "not_after_n": row.windows_not_after, "p": f"{row.p_value:.1g}"} for row in shown.itertuples()]}


def gpu_busy_section(cells: pd.DataFrame) -> dict:
    """Whether any cell has a GPU busy share, and the host-bound cells beside their host probe and round
    spread: a host-bound cell's latency moves with the host CPU, and those columns show whether it did."""
    share = pd.to_numeric(cells.get("gpu_busy_share", pd.Series(dtype=float)), errors="coerce")
    host_bound = cells[cells.get("bound", pd.Series(index=cells.index, dtype=object)) == "host-bound"]
    return {"measured": bool(share.notna().any()), "host_bound": styled(_present(host_bound, HOST_BOUND_COLUMNS)),
            "host_bound_n": len(host_bound), "note": gpu_busy.HOST_BOUND_NOTE,
            "gpu_bound_from": gpu_busy.GPU_BOUND_FROM, "host_bound_below": gpu_busy.HOST_BOUND_BELOW}


def not_measured_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells that have no number, one row per (status, reason): how many, of which backends."""
    rest = cells[cells["status"] != "ok"]
    if rest.empty:
        return pd.DataFrame(columns=["status", "reason", "cells", "backends"])
    grouped = rest.fillna({"reason": ""}).groupby(["status", "reason"], sort=True)
    return grouped.agg(cells=("backend", "size"), backends=("display", lambda s: ", ".join(sorted(set(s))))).reset_index()


def cost_table(cost: pd.DataFrame) -> pd.DataFrame:
    columns = ["model", "display", "precision", "batch", "seq_len", "median_ms", "setup_s", "compile_s", "build_s",
               "saved_ms_per_request", "break_even_requests"]
    return _present(cost, columns)


def provenance(cells: pd.DataFrame, environment_table: pd.DataFrame, rounds: pd.DataFrame, config: dict,
               generation: pd.DataFrame | None = None) -> dict:
    """One line: code version, device, driver, CUDA, torch, ONNX Runtime, date; each model described (the
    generation cells' device and models too)."""
    if generation is not None and not generation.empty:
        cells = pd.concat([cells, generation.reindex(columns=[c for c in ("model", "device", "driver", "cuda")
                                                              if c in generation])], ignore_index=True)
        environment_table = pd.concat([environment_table, generation.reindex(columns=[c for c in ("git_commit", "torch")
                                                                                      if c in generation])],
                                      ignore_index=True)
    def distinct(frame: pd.DataFrame, column: str) -> str:
        values = sorted({str(v) for v in frame.get(column, pd.Series(dtype=object)).dropna() if str(v) not in ("-", "")})
        return ", ".join(values)

    commits = {str(c).split("+")[0][:7] + ("+dirty" if "+dirty" in str(c) else "")
               for c in environment_table.get("git_commit", pd.Series(dtype=object)).dropna() if str(c) not in ("-", "")}
    started = pd.to_datetime(rounds.get("started_at", pd.Series(dtype=object)), errors="coerce", utc=True).dropna()
    items = [("code", ", ".join(sorted(commits)) or (environment.git_commit() or "unknown")[:7]),
             ("device", distinct(cells, "device") or "none recorded"), ("driver", distinct(cells, "driver")),
             ("CUDA", distinct(cells, "cuda")), ("torch", distinct(environment_table, "torch")),
             ("ONNX Runtime", distinct(environment_table, "onnxruntime")),
             ("measured", "" if started.empty else started.min().strftime("%Y-%m-%d"))]
    return {"items": [(k, v) for k, v in items if v],
            "models": [{"name": name, "what": describe_model(model)} for name, model in
                       sorted({**(config.get("generation") or {}).get("models", {}), **(config.get("models") or {})}.items())
                       if name in set(cells["model"])]}


def describe_model(model: dict) -> str:
    """"bert geometry (transformers' default config), random weights" or "pretrained weights from …"."""
    if model.get("pretrained"):
        return f"pretrained weights from {model['pretrained']}"
    overrides = model.get("overrides") or {}
    shape = (", ".join(f"{k} {v}" for k, v in overrides.items()) if overrides else "transformers' default config")
    return f"{model.get('model_type', '?')} geometry ({shape}), random weights"


def render(tables: dict[str, pd.DataFrame], figures: dict[str, Path], config: dict, out: Path,
           evidence: str | None = None) -> str:
    """The page from a run's tables, figures and config; ``evidence``: a link to this run's reproducibility
    evidence (another run's comparison, an outside check), named in the trust line."""
    catalogue = names.catalogue(tables["cells"], names.labels_of(config))
    cells = names.with_names(tables["cells"], catalogue)
    cells = _gib(cells, {"backend_peak_bytes": "backend_peak_gib", "backend_held_bytes": "backend_held_gib",
                         "device_peak_bytes": "device_peak_gib", "peak_bytes": "peak_gib"})
    best = tables["best"]
    margin = float((config.get("aggregate") or {}).get("practical_margin", 0.0))
    cost = names.with_names(tables["cost"], catalogue) if not tables["cost"].empty else tables["cost"].assign(display=None)
    gpu = gpu_busy_section(cells)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    unstable = cells[flag(cells["unstable"])] if "unstable" in cells else cells.iloc[0:0]
    resources = _present(cells[cells["status"] == "ok"], ["model", "display", "precision", "batch", "seq_len",
                                                          "backend_peak_gib", "backend_held_gib", "memory_method",
                                                          "device_peak_gib", "peak_gib", "sm_clock_before",
                                                          "sm_clock_after", "temp_c_after", "power_w_after"])
    images = sorted(tables["environment"]["container"].dropna().astype(str).unique()) if "container" in tables["environment"] else []
    images = [i for i in images if i != "-"]
    roofline = names.with_names(tables["roofline"], catalogue) if not tables["roofline"].empty else tables["roofline"]
    generation = generation_section(tables, config)
    html = env.get_template("index.html.j2").render(
        forward=not cells.empty,  # a run that only generates has no forward part
        generation=generation,
        provenance=provenance(cells, tables["environment"], tables["rounds"], config, tables.get("generation")),
        baseline=config["baseline"],
        baseline_name=names.display_name(*_engine_options(cells, config["baseline"]["backend"]),
                                         names.labels_of(config).get(config["baseline"]["backend"])),
        total=len(cells),
        gpu_ranges=ranges(cells),
        remote_code=sorted(name for name, model in config.get("models", {}).items() if model.get("trust_remote_code")),
        answer=answer.build(cells, best, catalogue, margin, evidence),
        fastest=styled_fastest(answer.fastest_table(best, cells, catalogue)),
        glance=styled(answer.backends_at_a_glance(cells, best, tables["speedup"], cost)),
        rounds=rounds_section(cells, tables["rounds"]),
        gpu_busy=gpu,
        accuracy=accuracy_matrix(cells),
        accuracy_cells=styled(_present(cells[cells["status"] == "ok"], ["model", "display", "precision", "batch",
                                                                         "seq_len", "accuracy_passed", "tolerance",
                                                                         "rel_l2", "max_abs", "rel_l2_fp64",
                                                                         "max_abs_fp64", "cosine"]),
                              highlight="accuracy_passed"),
        fusions=styled(fusions_per_model(cells)),
        cost_cells=styled(cost_table(cost)),
        roofline=styled(_present(roofline, ["model", "display", "precision", "batch", "seq_len", "median_ms", "flops",
                                            "min_bytes", "floor_ms", "pct_of_floor", "peak_raised"])),
        roofline_raised=sorted({p for v in roofline.get("peak_raised", pd.Series(dtype=object)).dropna()
                                for p in str(v).split(", ")}),
        resources=styled(resources),
        unstable=styled(_present(unstable, ["model", "display", "precision", "batch", "seq_len", "cv", "unstable_why",
                                            "median_ms"])),
        cells=styled(_present(cells, CELL_COLUMNS), highlight="accuracy_passed"),
        not_ok=styled(not_measured_table(cells)),
        environment=styled(tables["environment"]),
        images=images,
        figures={name: _inline_png(path) for name, path in figures.items()},
        config_yaml=yaml.safe_dump(config, sort_keys=False),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return html


GENERATION_COLUMNS = ["model", "display", "precision", "batch", "prompt_len", "new_tokens", "status", "tpot_ms",
                      "tpot_lo_ms", "tpot_hi_ms", "ttft_ms", "first_step_ms", "last_step_ms", "tokens_per_s",
                      "tpot_over_floor", "kernels_per_token", "busy_share", "cache", "cache_allocated_len", "accuracy_passed", "teacher_forced_top1",
                      "logits_rel_err", "first_divergence", "backend_peak_gib", "prepare_s", "recompiles", "reason"]


def generation_section(tables: dict[str, pd.DataFrame], config: dict) -> dict | None:
    """The generation workload's part of the page (None where the run has no generation cell)."""
    cells = tables.get("generation")
    if cells is None or cells.empty:
        return None
    catalogue = names.catalogue(cells, names.labels_of(config, "generation"))
    named = _gib(names.with_names(cells, catalogue), {"backend_peak_bytes": "backend_peak_gib"})
    best = tables.get("generation_best")
    return {"total": len(named), "answer": answer.generation_groups(best, named, catalogue),
            "table": styled_fastest(answer.generation_table(best, named, catalogue)),
            "cells": styled(_present(named, GENERATION_COLUMNS), highlight="accuracy_passed"),
            "not_measured": [f"{r.display} {r.precision}: {r.status} ({str(r.reason).split(': ')[0]})"
                             for r in named[named["status"] != "ok"].drop_duplicates(["display", "precision", "status"]).itertuples()],
            "timing": " / ".join(sorted(set(named.get("clock", pd.Series(dtype=object)).dropna().astype(str)))) or "–"}


def _engine_options(cells: pd.DataFrame, backend: str) -> tuple[str, dict]:
    rows = cells[cells["backend"] == backend]
    if rows.empty:
        return backend, {}
    return str(rows["engine"].iloc[0]), names._options(rows["options"].iloc[0] if "options" in rows else None)


def styled_fastest(frame: pd.DataFrame) -> str:
    """The fastest-configuration table: text columns already formatted; "either" rows marked."""
    if frame.empty:
        return "<p class='empty'>(no measured cell passed the accuracy check)</p>"
    shown = frame.drop(columns=["tie"])
    styler = Styler(shown, cell_ids=False).format(escape="html", na_rep="–").format_index(escape="html", axis=1)
    styler = styler.hide(axis="index")
    ties = flag(frame["tie"]).tolist()
    styler = styler.apply(lambda row: ["background:#fff4d6" if ties[row.name] else ""] * len(row), axis=1)
    return styler.set_table_attributes('class="data fastest"').to_html()
