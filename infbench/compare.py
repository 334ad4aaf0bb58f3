"""Compare two result sets (two GPUs, two library versions, before/after a change): per cell, the latency
ratio B/A with a bootstrap CI from both runs' raw samples, and which changes are significant.

A change is significant when its 95% CI excludes 1 *and* it is at least ``min_change`` (a fraction): with
thousands of samples a 0.3% drift is statistically real and practically noise. Cells whose status changed,
or that exist in one run only, are listed too: a backend that stopped working is the biggest change of all.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd

from infbench.report import TEMPLATE_DIR, styled
from infbench.measure.stats import ratio_of_medians_ci
from infbench.tables import KEY


def load(table_dir: Path) -> dict[str, pd.DataFrame]:
    table_dir = Path(table_dir)
    return {name: pd.read_csv(table_dir / f"{name}.csv") for name in ("cells", "samples", "environment")}


def changes(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], min_change: float = 0.05) -> pd.DataFrame:
    """One row per cell present in either run: both medians, ratio B/A with CI, status in each, verdict."""
    cells = a["cells"][[*KEY, "status", "median_ms"]].merge(
        b["cells"][[*KEY, "status", "median_ms"]], on=KEY, how="outer", suffixes=("_a", "_b"))
    samples_a = {k: g["latency_ms"].to_numpy() for k, g in a["samples"].groupby(KEY)}
    samples_b = {k: g["latency_ms"].to_numpy() for k, g in b["samples"].groupby(KEY)}
    rows = []
    for row in cells.to_dict("records"):
        key = tuple(row[k] for k in KEY)
        ratio = lo = hi = None
        if key in samples_a and key in samples_b:
            ratio, lo, hi = ratio_of_medians_ci(samples_b[key], samples_a[key])  # latency B / latency A
        significant = ratio is not None and (lo > 1 or hi < 1) and abs(ratio - 1) >= min_change
        if pd.isna(row["status_a"]) or pd.isna(row["status_b"]):
            verdict = "only in A" if pd.isna(row["status_b"]) else "only in B"
        elif row["status_a"] != row["status_b"]:
            verdict = f"status {row['status_a']} → {row['status_b']}"
        elif significant:
            verdict = "slower" if ratio > 1 else "faster"
        else:
            verdict = "same" if ratio is not None else "not measured"
        rows.append({**row, "ratio_b_over_a": ratio, "ratio_lo": lo, "ratio_hi": hi, "significant": significant,
                     "verdict": verdict})
    frame = pd.DataFrame(rows)
    return frame.sort_values(KEY).reset_index(drop=True)


def render(a: dict, b: dict, table: pd.DataFrame, labels: tuple[str, str], min_change: float, out: Path) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    notable = table[table["verdict"] != "same"]
    html = env.get_template("compare.html.j2").render(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        labels=labels, min_change=min_change,
        counts=table["verdict"].value_counts().to_dict(),
        notable=styled(notable, precision=3),
        everything=styled(table, precision=3),
        environment_a=styled(a["environment"]), environment_b=styled(b["environment"]),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return html
