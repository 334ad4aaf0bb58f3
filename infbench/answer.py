"""The answer a reader came for, in words, from the tables: what to use per shape group, by how much, how sure.

Everything here is read off ``best.csv`` (winner, runner-up and fastest PyTorch-native cell per shape, with
their paired ratios and the tie call), ``cells.csv`` (latencies, intervals, busy class, memory, status) and
``cost.csv``; nothing is re-estimated. Numbers are rounded for reading (three significant digits for a
latency, two decimals for a ratio): the CSVs keep full precision.
"""

from __future__ import annotations

import math

import pandas as pd

from infbench import names
from infbench.measure import gpu_busy

USELESS_HALF_WIDTH = 0.5  # a median interval wider than ±50 % cannot rank backends that differ by 2x
MIN_ROUNDS = 3  # fewer rounds than this: the interval's t quantile is huge or undefined


def half_width(cells: pd.DataFrame) -> pd.Series:
    """Each cell's 95 % interval as ± a fraction of its latency: half the interval's width over the latency
    (the interval is asymmetric where the host's drift is; this is its average reach either side)."""
    median = pd.to_numeric(cells["median_ms"], errors="coerce")
    width = pd.to_numeric(cells["ci_hi_ms"], errors="coerce") - pd.to_numeric(cells["ci_lo_ms"], errors="coerce")
    return width / 2 / median


def ms(value) -> str:
    """A latency with three significant digits, trailing zeros kept (0.500, 2.30, 123)."""
    if value is None or pd.isna(value):
        return "–"
    if value <= 0:
        return f"{value:g}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f}"


def times(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.2f}×"


def _span(values, fmt) -> str:
    values = [v for v in values if v is not None and not pd.isna(v)]
    if not values:
        return "–"
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def shapes_text(shapes: list[tuple[int, int]], every: int) -> str:
    """"every shape" or "batch 1 (seq 16, 128), batch 8 (seq 16)"."""
    if len(shapes) == every and every > 1:
        return "every shape measured"
    by_batch: dict[int, list[int]] = {}
    for batch, seq_len in sorted(shapes):
        by_batch.setdefault(batch, []).append(seq_len)
    return ", ".join(f"batch {b} (seq {', '.join(str(s) for s in seqs)})" for b, seqs in by_batch.items())


def _named(frame: pd.DataFrame, catalogue: pd.DataFrame, prefixes: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with display names: ``display`` and ``use`` (name and precision) for its winner, and
    ``{prefix}_display``/``{prefix}_use`` for each other backend it names in ``{prefix}_backend`` (empty where
    that column is empty or absent). The forward and the generation tables name their cells the same way."""
    out = names.with_names(frame, catalogue)
    out["use"] = out["display"] + " " + out["precision"]
    for prefix in prefixes:
        column = f"{prefix}_backend"
        out[f"{prefix}_display"] = None
        known = out[column].notna() if column in out else pd.Series(False, index=out.index)
        if known.any():
            named = names.with_names(out[known], catalogue, column=column, prefix=f"{prefix}_")
            out.loc[known, f"{prefix}_display"] = named[f"{prefix}_display"]
        out[f"{prefix}_use"] = (out[f"{prefix}_display"] + " " + out[f"{prefix}_precision"]).where(
            out[f"{prefix}_display"].notna())
    return out


def _with_display(best: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """best.csv named (``_named``) for the winner, the runner-up and the fastest PyTorch-native cell (a table
    from before those columns gets them empty: its runner-up is then named by its config label)."""
    from infbench.tables import BEST_COLUMNS

    out = _named(best.reindex(columns=list(dict.fromkeys([*BEST_COLUMNS, *best.columns]))), catalogue,
                 ("runner_up", "native"))
    out["runner_up_use"] = out["runner_up_use"].where(out["runner_up_display"].notna(), out["runner_up"])
    return out


def _tie_text(why) -> str:
    return "their 95 % interval contains 1" if why in (None, "interval contains 1") or pd.isna(why) else str(why)


def _group_line(group: pd.DataFrame, every: int) -> dict:
    first = group.iloc[0]
    tie = bool(first["tie"])
    shapes = shapes_text(list(zip(group["batch"].astype(int), group["seq_len"].astype(int))), every)
    widths = 100 * group["half_width"]
    latency = f"{_span(group['median_ms'], ms)} ms (95 % interval ±{_span(widths, _percent)} %)"
    runner_ups = sorted(set(group["runner_up_use"].dropna()))
    if tie:
        use = f"Either {first['use']} or {first['runner_up_use']}"
        lead = (f"They are {_span(100 * (group['runner_up_ratio'] - 1), lambda v: f'{v:.2f}')} % apart: "
                f"not a reliable difference ({', '.join(sorted({_tie_text(w) for w in group.get('tie_why', [None])}))}).")
    elif runner_ups:
        use = first["use"]
        lead = (f"{_span(group['runner_up_ratio'], times)} faster than the runner-up ({', '.join(runner_ups)}; "
                f"95 % interval from {times(group['runner_up_ratio_lo'].min())}).")
    else:
        use, lead = first["use"], "The only accurate backend measured here."
    native = group["native_use"].dropna()
    if group["native_backend"].eq(group["backend"]).all() and group["native_precision"].eq(group["precision"]).all():
        native_text = "It is PyTorch's own: nothing to export or convert."
    elif native.empty:
        native_text = "No PyTorch-native backend passed the accuracy check here."
    else:
        native_text = (f"Against the best PyTorch option ({', '.join(sorted(set(native)))}): "
                       f"{_span(group['native_ratio'], times)} faster.")
    return {"use": use, "shapes": shapes, "latency": latency, "lead": lead, "native": native_text, "tie": tie}


def groups(best: pd.DataFrame, cells: pd.DataFrame, catalogue: pd.DataFrame) -> list[dict]:
    """Per model: its shapes grouped by what to use there (a winner, or a tied pair), in shape order."""
    if best.empty:
        return []
    frame = _with_display(best, catalogue)
    widths = cells.assign(half_width=half_width(cells))[["model", "backend", "precision", "batch", "seq_len", "half_width"]]
    frame = frame.merge(widths, on=["model", "backend", "precision", "batch", "seq_len"], how="left")
    frame["call"] = [" | ".join(sorted([u, r])) if bool(t) and isinstance(r, str) else u
                     for u, r, t in zip(frame["use"], frame["runner_up_use"], frame["tie"])]
    out = []
    for model, rows in frame.sort_values(["model", "batch", "seq_len"]).groupby("model", sort=True):
        every = int(cells[cells["model"] == model][["batch", "seq_len"]].drop_duplicates().shape[0])
        lines = [_group_line(group, every) for _, group in rows.groupby("call", sort=False)]
        out.append({"model": model, "lines": lines})
    return out


def not_measured(cells: pd.DataFrame, catalogue: pd.DataFrame) -> list[str]:
    """One sentence per family with cells that have no number, and one for a family absent from the matrix."""
    lines = []
    rest = names.with_names(cells[cells["status"] != "ok"], catalogue) if len(cells) else cells
    for family in names.FAMILIES:
        mine = rest[rest["family"] == family] if len(rest) else rest
        if mine.empty:
            continue
        parts = []
        for status, rows in mine.groupby("status", sort=True):
            reasons = sorted({str(r).split(": ")[0] for r in rows["reason"].dropna()})  # the reason's head
            shown = "; ".join(reasons[:2]) + (f"; {len(reasons) - 2} more" if len(reasons) > 2 else "")
            parts.append(f"{len(rows)} {status}" + (f" ({shown})" if shown else ""))
        backends = sorted(set(mine["display"]))
        measured = cells[(cells["status"] == "ok") & cells["backend"].isin(catalogue[catalogue["family"] == family]["backend"])]
        consequence = (" The answer may change where it runs." if measured.empty and "unavailable" in set(mine["status"])
                       else "")
        lines.append(f"{family}: {', '.join(parts)} — {', '.join(backends)}.{consequence}")
    configured = set(catalogue["family"])
    if "TensorRT" not in configured:
        lines.append("TensorRT: not part of this matrix.")
    return lines


def trust(cells: pd.DataFrame, evidence: str | None) -> dict:
    """The typical interval by GPU-busy class (or over all cells where there is no busy share)."""
    ok = cells[cells["status"] == "ok"]
    ok = ok.assign(half_width=half_width(ok))
    bound = ok.get("bound", pd.Series(index=ok.index, dtype=object))
    classes = []
    if bound.notna().any():
        for name in gpu_busy.CLASSES:
            rows = ok[bound == name]
            if len(rows):
                classes.append({"name": name, "n": len(rows), "pct": f"{100 * rows['half_width'].median():.1f}"})
    elif len(ok):
        classes.append({"name": "measured", "n": len(ok), "pct": f"{100 * ok['half_width'].median():.1f}"})
    return {"classes": classes, "evidence": evidence}


def banner(cells: pd.DataFrame) -> str | None:
    """Why this run's intervals cannot rank backends, or None: too few rounds, or a median interval wider
    than ±50 % (a loaded or throttling machine)."""
    ok = cells[cells["status"] == "ok"]
    if ok.empty:
        return None
    rounds = pd.to_numeric(ok.get("rounds", pd.Series(dtype=float)), errors="coerce").dropna()
    width = half_width(ok).median()
    if not rounds.empty and rounds.max() < MIN_ROUNDS:
        return (f"Each cell was timed in {rounds.max():.0f} round(s): too few for an interval a rerun can be held to. "
                f"Set timing.rounds to {MIN_ROUNDS} or more.")
    if not math.isnan(width) and width > USELESS_HALF_WIDTH:
        return (f"These numbers cannot rank the backends: the typical 95 % interval is ±{100 * width:.0f} % of the "
                "latency, so the machine's speed moved more than most differences between backends. Rerun on an "
                "idle machine (nothing else running), or with more rounds (timing.rounds) spread further apart "
                "(timing.round_spacing_s).")
    return None


def build(cells: pd.DataFrame, best: pd.DataFrame, catalogue: pd.DataFrame, margin: float,
          evidence: str | None = None) -> dict:
    """The answer box: what to use per shape group, what was not measured, how sure, and any banner."""
    return {"groups": groups(best, cells, catalogue), "not_measured": not_measured(cells, catalogue),
            "trust": trust(cells, evidence), "banner": banner(cells), "margin_pct": f"{100 * margin:g}"}


def fastest_table(best: pd.DataFrame, cells: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """Per shape, in words: what to use, its latency with its interval, the runner-up and by how much it is
    slower (with the ratio's interval), the best PyTorch option and by how much; "either" where tied."""
    columns = ["Model", "Shape", "Use", "Latency (ms) [95 %]", "Runner-up", "Runner-up slower by [95 %]",
               "Best PyTorch option", "PyTorch slower by", "Call", "tie"]
    if best.empty:
        return pd.DataFrame(columns=columns)
    frame = _with_display(best, catalogue)
    intervals = cells.set_index(["model", "backend", "precision", "batch", "seq_len"])[["ci_lo_ms", "ci_hi_ms"]]
    rows = []
    for r in frame.sort_values(["model", "batch", "seq_len"]).itertuples(index=False):
        lo, hi = intervals.loc[(r.model, r.backend, r.precision, r.batch, r.seq_len)] \
            if (r.model, r.backend, r.precision, r.batch, r.seq_len) in intervals.index else (None, None)
        native_same = r.native_backend == r.backend and r.native_precision == r.precision
        rows.append({"Model": r.model, "Shape": f"b{r.batch} × s{r.seq_len}", "Use": r.use,
                     "Latency (ms) [95 %]": f"{ms(r.median_ms)} [{ms(lo)}, {ms(hi)}]",
                     "Runner-up": r.runner_up_use if isinstance(r.runner_up_use, str) else "–",
                     "Runner-up slower by [95 %]": (f"{times(r.runner_up_ratio)} [{times(r.runner_up_ratio_lo)}, "
                                                    f"{times(r.runner_up_ratio_hi)}]")
                     if isinstance(r.runner_up_use, str) else "–",
                     "Best PyTorch option": "(this one)" if native_same else "(the runner-up)"
                     if r.native_use == r.runner_up_use else (r.native_use if isinstance(r.native_use, str) else "–"),
                     "PyTorch slower by": "–" if native_same else times(r.native_ratio),
                     "Call": "either" if bool(r.tie) else "lead", "tie": bool(r.tie)})
    out = pd.DataFrame(rows, columns=columns)
    return out.drop(columns=["Model"]) if out["Model"].nunique() == 1 else out


def backends_at_a_glance(cells: pd.DataFrame, best: pd.DataFrame, speedup: pd.DataFrame,
                         cost: pd.DataFrame) -> pd.DataFrame:
    """One row per backend × precision (and model where several): shapes won, latency over the fastest at
    each shape (geometric mean), speedup vs the baseline (geometric mean), setup and break-even, accuracy,
    peak memory, and the status where it has no number."""
    rows = []
    fastest = best.set_index(["model", "batch", "seq_len"])["median_ms"] if not best.empty else pd.Series(dtype=float)
    for (model, backend, precision), group in cells.groupby(["model", "backend", "precision"], sort=True):
        ok = group[group["status"] == "ok"]
        shapes = group[["batch", "seq_len"]].drop_duplicates().shape[0]
        won = best[(best["model"] == model) & (best["backend"] == backend) & (best["precision"] == precision)] \
            if not best.empty else best
        tied = best[(best["model"] == model) & flag(best["tie"]) & (best.get("runner_up_backend", pd.Series(index=best.index, dtype=object)) == backend)
                    & (best.get("runner_up_precision", pd.Series(index=best.index, dtype=object)) == precision)] \
            if not best.empty and "runner_up_backend" in best else best.iloc[0:0]
        ratios = [m / fastest[(model, b, s)] for b, s, m in zip(ok["batch"], ok["seq_len"], ok["median_ms"])
                  if (model, b, s) in fastest.index]
        mine = speedup[(speedup["model"] == model) & (speedup["backend"] == backend) & (speedup["precision"] == precision)] \
            if not speedup.empty else speedup
        setup = cost[(cost["model"] == model) & (cost["backend"] == backend) & (cost["precision"] == precision)] \
            if not cost.empty else cost
        passed = ok["accuracy_passed"].astype("boolean").fillna(False) if len(ok) else pd.Series(dtype=bool)
        statuses = group[group["status"] != "ok"]["status"].value_counts()
        rows.append({
            "Model": model, "Family": group["family"].iloc[0], "Backend": group["display"].iloc[0],
            "Precision": precision,
            "Fastest at": f"{len(won)} of {shapes}" + (f" (+{len(tied)} tied)" if len(tied) else ""),
            "vs fastest": times(_geomean(ratios)),
            "Speedup vs baseline": times(_geomean(mine["speedup"])) if len(mine) else "–",
            "Setup (s)": f"{setup['setup_s'].median():.1f}" if len(setup) else "–",
            "Break-even (requests)": _span(setup["break_even_requests"], lambda v: f"{v:,.0f}") if len(setup) else "–",
            "Accurate": f"{int(passed.sum())} of {len(ok)}" if len(ok) else "–",
            "Peak memory (GiB)": _span(group.get("backend_peak_gib", pd.Series(dtype=float)), lambda v: f"{v:.3g}"),
            "Not measured": ", ".join(f"{n} {s}" for s, n in statuses.items()) or "",
            "_order": _geomean(ratios) if ratios else math.inf})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values(["Model", "_order", "Backend"]).drop(columns=["_order"])
    for column, empty in (("Not measured", ""), ("Peak memory (GiB)", "–")):  # a run that has none of it
        if frame[column].eq(empty).all():
            frame = frame.drop(columns=[column])
    return frame.drop(columns=["Model"]) if frame["Model"].nunique() == 1 else frame


def flag(column: pd.Series) -> pd.Series:
    """A boolean column as read back from CSV (bools, or NaN where unknown) with unknown = False."""
    return column.astype("boolean").fillna(False).astype(bool)


def _geomean(values) -> float | None:
    values = [float(v) for v in values if v is not None and not pd.isna(v) and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def generation_groups(best: pd.DataFrame, cells: pd.DataFrame, catalogue: pd.DataFrame) -> list[dict]:
    """Per (model, prompt, new tokens), the batch sizes grouped by what to use there, in words."""
    if best is None or best.empty:
        return []
    frame = _named(best, catalogue, ("runner_up", "baseline"))
    widths = cells.assign(half_width=(cells["tpot_hi_ms"] - cells["tpot_lo_ms"]) / 2 / cells["tpot_ms"])
    frame = frame.merge(widths[["model", "backend", "precision", "batch", "prompt_len", "new_tokens", "half_width"]],
                        on=["model", "backend", "precision", "batch", "prompt_len", "new_tokens"], how="left")
    frame["call"] = [" | ".join(sorted([u, r])) if bool(t) and isinstance(r, str) else u
                     for u, r, t in zip(frame["use"], frame["runner_up_use"], frame["tie"])]
    out = []
    for (model, prompt_len, new_tokens), rows in frame.groupby(["model", "prompt_len", "new_tokens"], sort=True):
        lines = []
        for _, group in rows.sort_values("batch").groupby("call", sort=False):
            first = group.iloc[0]
            use = f"Either {first['use']} or {first['runner_up_use']}" if bool(first["tie"]) else first["use"]
            batches = ", ".join(str(int(b)) for b in group["batch"])
            text = (f"{_span(group['tpot_ms'], ms)} ms per token (±{_span(100 * group['half_width'], _percent)} %), "
                    f"first token after {_span(group['ttft_ms'], ms)} ms")
            if group["speedup"].notna().any() and isinstance(first.get("baseline_display"), str):
                text += (f"; {_span(group['speedup'], times)} faster per token than {first['baseline_display']} "
                         f"{first['baseline_precision']}")
            if not bool(first["tie"]) and group["runner_up_ratio"].notna().any():
                text += f"; the runner-up ({', '.join(sorted(set(group['runner_up_use'].dropna())))}) is {_span(group['runner_up_ratio'], times)} slower"
            lines.append({"use": use, "shapes": f"batch {batches}", "text": text, "tie": bool(first["tie"])})
        out.append({"model": model, "what": f"prompt {int(prompt_len)}, {int(new_tokens)} new tokens", "lines": lines})
    return out


def generation_table(best: pd.DataFrame, cells: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """Per generation shape, in words: what to use, its TPOT with its interval, TTFT, tokens/s, how far above
    the bandwidth floor, the runner-up and the baseline."""
    columns = ["Model", "Batch", "Prompt", "New tokens", "Use", "Per token (ms) [95 %]", "First token (ms)",
               "Tokens/s", "× floor", "Runner-up slower by [95 %]", "vs baseline", "Call", "tie"]
    if best is None or best.empty:
        return pd.DataFrame(columns=columns)
    frame = _named(best, catalogue, ("runner_up", "baseline"))
    info = cells.set_index(["model", "backend", "precision", "batch", "prompt_len", "new_tokens"])
    rows = []
    for r in frame.sort_values(["model", "prompt_len", "batch"]).itertuples(index=False):
        cell = info.loc[(r.model, r.backend, r.precision, r.batch, r.prompt_len, r.new_tokens)]
        rows.append({"Model": r.model, "Batch": int(r.batch), "Prompt": int(r.prompt_len), "New tokens": int(r.new_tokens),
                     "Use": f"{r.display} {r.precision}",
                     "Per token (ms) [95 %]": f"{ms(r.tpot_ms)} [{ms(cell['tpot_lo_ms'])}, {ms(cell['tpot_hi_ms'])}]",
                     "First token (ms)": ms(r.ttft_ms), "Tokens/s": f"{cell['tokens_per_s']:,.0f}",
                     "× floor": times(cell["tpot_over_floor"]),
                     "Runner-up slower by [95 %]": (f"{r.runner_up_display} {r.runner_up_precision}: {times(r.runner_up_ratio)} "
                                                    f"[{times(r.runner_up_ratio_lo)}, {times(r.runner_up_ratio_hi)}]")
                     if isinstance(r.runner_up_display, str) else "–",
                     "vs baseline": times(r.speedup), "Call": "either" if bool(r.tie) else "lead", "tie": bool(r.tie)})
    out = pd.DataFrame(rows, columns=columns)
    return out.drop(columns=["Model"]) if out["Model"].nunique() == 1 else out


def _percent(value: float) -> str:
    """A half-width in percent: whole percents, one decimal below 1 % (a ±0.3 % interval is not ±0 %)."""
    return f"{value:.1f}" if value < 1 else f"{value:.0f}"
