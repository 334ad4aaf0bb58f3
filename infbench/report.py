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

from infbench import environment

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "report" / "templates"
CELL_COLUMNS = ["model", "backend", "precision", "batch", "seq_len", "status", "median_ms", "ci_lo_ms",
                "ci_hi_ms", "p90_ms", "p99_ms", "cv", "n", "stop_reason", "sequences_per_s", "tokens_per_s",
                "accuracy_passed", "rel_l2", "max_abs", "cosine", "prepare_s", "compile_s", "graph_breaks",
                "recompiles", "fused_ops", "peak_bytes", "threads"]


def styled(frame: pd.DataFrame, precision: int = 3, highlight: str | None = None) -> str:
    """An escaped HTML table (pandas Styler); rows failing ``highlight`` (a boolean column) are marked."""
    if frame.empty:
        return "<p class='empty'>(none)</p>"
    styler = frame.style.format(precision=precision, na_rep="–", escape="html", thousands=",")
    styler = styler.format_index(escape="html", axis=1).hide(axis="index")
    if highlight and highlight in frame.columns:
        bad = frame[highlight].astype("boolean").fillna(True) == False  # noqa: E712
        styler = styler.apply(lambda row: ["background:#fde2e1" if bad[row.name] else "" for _ in row], axis=1)
    return styler.set_table_attributes('class="data"').to_html()


def _inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def status_counts(cells: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in cells["status"].value_counts().sort_index().items()}


def render(tables: dict[str, pd.DataFrame], figures: dict[str, Path], config: dict, out: Path) -> str:
    cells = tables["cells"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    not_ok = cells[cells["status"] != "ok"][["model", "backend", "precision", "batch", "seq_len", "status",
                                             "reason", "log"]]
    best = tables["best"]
    html = env.get_template("index.html.j2").render(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        git_commit=environment.git_commit(),
        baseline=config["baseline"],
        counts=status_counts(cells),
        total=len(cells),
        devices=sorted(cells["device"].dropna().astype(str).unique()),
        best=styled(best),
        speedup=styled(tables["speedup"], highlight="accuracy_passed"),
        cells=styled(cells[[c for c in CELL_COLUMNS if c in cells.columns]], highlight="accuracy_passed"),
        not_ok=styled(not_ok),
        environment=styled(tables["environment"]),
        figures={name: _inline_png(path) for name, path in figures.items()},
        config_yaml=yaml.safe_dump(config, sort_keys=False),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return html
