"""Figures from the tables (seaborn): the speedup heatmap of the seed and latency vs sequence length.

Each function writes one PNG and always writes it: with nothing measured, the figure says so, so the report
never has a hole where a figure should be.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

DPI = 110


def _empty(path: Path, message: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _heatmap(data: pd.DataFrame, color=None, **kwargs) -> None:
    grid = data.pivot_table(index="batch", columns="seq_len", values="speedup")
    marks = data.assign(mark=data["significant"].map({True: "", False: "~"}))
    labels = marks.pivot_table(index="batch", columns="seq_len", values="speedup", aggfunc="first").copy()
    signs = marks.pivot_table(index="batch", columns="seq_len", values="mark", aggfunc="first")
    annot = labels.apply(lambda col: col.map(lambda v: f"{v:.2f}x")) + signs.reindex_like(labels).fillna("")
    sns.heatmap(grid, annot=annot, fmt="", cmap="RdYlGn", center=1.0, vmin=kwargs.get("vmin"),
                vmax=kwargs.get("vmax"), cbar=False, linewidths=0.5, ax=plt.gca())


def speedup_heatmap(speedup: pd.DataFrame, path: Path, baseline: dict) -> None:
    """Batch × seq_len speedup vs the baseline, one panel per backend (columns) × precision (rows)."""
    path = Path(path)
    if speedup.empty:
        _empty(path, "no measured cell has a measured baseline: no speedups")
        return
    frame = speedup.copy()
    frame["panel"] = frame["model"] + " · " + frame["backend"]
    spread = max(abs(frame["speedup"].max() - 1), abs(1 - frame["speedup"].min()), 0.05)
    grid = sns.FacetGrid(frame, col="panel", row="precision", height=2.6, aspect=1.25, sharex=False,
                         sharey=False, margin_titles=True)
    grid.map_dataframe(_heatmap, vmin=1 - spread, vmax=1 + spread)
    measured = set(zip(frame["precision"], frame["panel"]))
    for (precision, panel), ax in grid.axes_dict.items():
        if (precision, panel) not in measured:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "not measured\n(see the cells table)", ha="center", va="center", color="#777",
                    transform=ax.transAxes)
    grid.set_titles(col_template="{col_name}", row_template="{row_name}")
    grid.set_axis_labels("seq_len", "batch")
    grid.figure.suptitle(
        f"Speedup vs {baseline['backend']} {baseline['precision']} (median ratio; ~ = 95% CI includes 1)", y=1.02
    )
    grid.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(grid.figure)


def _ci_band(data: pd.DataFrame, color=None, **kwargs) -> None:
    ordered = data.sort_values("seq_len")
    plt.gca().fill_between(ordered["seq_len"], ordered["ci_lo_ms"], ordered["ci_hi_ms"], alpha=0.25, color=color)


def latency_vs_seq_len(cells: pd.DataFrame, path: Path) -> None:
    """Median latency vs seq_len, one panel per batch size, one line per backend/precision, 95 % CI band."""
    path = Path(path)
    ok = cells[cells["status"] == "ok"].copy()
    if ok.empty:
        _empty(path, "no measured cells")
        return
    ok["series"] = ok["model"] + " · " + ok["backend"] + " · " + ok["precision"]
    grid = sns.FacetGrid(ok, col="batch", hue="series", height=3.2, aspect=1.2, sharey=False)
    grid.map_dataframe(_ci_band)
    grid.map_dataframe(sns.lineplot, x="seq_len", y="median_ms", marker="o")
    seq_lens = sorted(ok["seq_len"].unique())
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(seq_lens, [str(s) for s in seq_lens])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    grid.set_titles(col_template="batch {col_name}")
    grid.set_axis_labels("seq_len (tokens)", "median latency (ms)")
    grid.add_legend(title="model · backend · precision")
    grid.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(grid.figure)


FIGURES = {"speedup_heatmap": "speedup_heatmap.png", "latency_vs_seq_len": "latency_vs_seq_len.png"}


def write_all(tables: dict[str, pd.DataFrame], baseline: dict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / filename for name, filename in FIGURES.items()}
    speedup_heatmap(tables["speedup"], paths["speedup_heatmap"], baseline)
    latency_vs_seq_len(tables["cells"], paths["latency_vs_seq_len"])
    return paths
