"""Figures from the tables (seaborn): the verdict heatmap, the seed's speedup heatmap, latency vs sequence
length, throughput vs batch, the roofline, the spread of each cell's rounds, and the GPU busy share.

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

from infbench.measure import gpu_busy  # noqa: E402
from infbench.tables import KEY  # noqa: E402

DPI = 110


def _empty(path: Path, message: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def speedup_norm(speedups: pd.Series):
    """Colours centred on 1 (no change), slower below and faster above, never a negative speedup."""
    from matplotlib.colors import TwoSlopeNorm

    values = pd.to_numeric(speedups, errors="coerce").dropna()
    low = min(float(values.min()) if not values.empty else 0.9, 0.95)
    high = max(float(values.max()) if not values.empty else 1.1, 1.05)
    return TwoSlopeNorm(vcenter=1.0, vmin=low, vmax=high)


def _heatmap(data: pd.DataFrame, color=None, **kwargs) -> None:
    grid = data.pivot_table(index="batch", columns="seq_len", values="speedup")
    marks = data.assign(mark=data["significant"].map({True: "", False: "~"}))
    labels = marks.pivot_table(index="batch", columns="seq_len", values="speedup", aggfunc="first").copy()
    signs = marks.pivot_table(index="batch", columns="seq_len", values="mark", aggfunc="first")
    annot = labels.apply(lambda col: col.map(lambda v: f"{v:.2f}x")) + signs.reindex_like(labels).fillna("")
    sns.heatmap(grid, annot=annot, fmt="", cmap="RdYlGn", norm=kwargs["norm"], cbar=False, linewidths=0.5,
                ax=plt.gca())


def speedup_heatmap(speedup: pd.DataFrame, path: Path, baseline: dict) -> None:
    """Batch × seq_len speedup vs the baseline, one panel per backend (columns) × precision (rows)."""
    path = Path(path)
    if speedup.empty:
        _empty(path, "no measured cell has a measured baseline: no speedups")
        return
    frame = speedup.copy()
    frame["panel"] = frame["model"] + " · " + frame["backend"]
    grid = sns.FacetGrid(frame, col="panel", row="precision", height=2.6, aspect=1.25, sharex=False,
                         sharey=False, margin_titles=True)
    grid.map_dataframe(_heatmap, norm=speedup_norm(frame["speedup"]))
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


def _measured_series(cells: pd.DataFrame, path: Path) -> pd.DataFrame | None:
    """The measured cells with a 'series' label per line; None (and an explanatory figure) if there are none."""
    ok = cells[cells["status"] == "ok"].copy()
    if ok.empty:
        _empty(path, "no measured cells")
        return None
    ok["series"] = ok["model"] + " · " + ok["backend"] + " · " + ok["precision"]
    return ok


def latency_vs_seq_len(cells: pd.DataFrame, path: Path) -> None:
    """Median latency vs seq_len, one panel per batch size, one line per backend/precision, 95 % CI band."""
    path = Path(path)
    ok = _measured_series(cells, path)
    if ok is None:
        return
    grid = sns.FacetGrid(ok, col="batch", hue="series", height=3.2, aspect=1.2, sharey=False)
    grid.map_dataframe(_ci_band)
    grid.map_dataframe(sns.lineplot, x="seq_len", y="median_ms", marker="o")
    _finish_log_log(grid, sorted(ok["seq_len"].unique()), "batch {col_name}", "seq_len (tokens)",
                    "median latency (ms)", path)


def _finish_log_log(grid, ticks, title: str, xlabel: str, ylabel: str, path: Path) -> None:
    """Shared by the line figures: log2 x with the grid's values as ticks, log y in plain numbers, legend."""
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    grid.set_titles(col_template=title)
    grid.set_axis_labels(xlabel, ylabel)
    grid.add_legend(title="model · backend · precision")
    grid.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(grid.figure)


def verdict_label(row) -> str:
    """One shape's cell of the verdict heatmap: the winner, or "A ≈ B" where best.csv calls a tie (the picture
    must not claim a winner the numbers cannot tell), then the winner's speedup and its interval."""
    text = f"{row.backend}\n{row.precision}"
    tie = getattr(row, "tie", False)
    if pd.notna(tie) and bool(tie) and isinstance(getattr(row, "runner_up", None), str):
        text = f"{row.backend} {row.precision}\n≈ {row.runner_up}"
    if pd.notna(row.speedup):
        text += f"\n{row.speedup:.2f}x [{row.speedup_lo:.2f}, {row.speedup_hi:.2f}]"
    return text


def verdict_heatmap(best: pd.DataFrame, path: Path, baseline: dict) -> None:
    """Per shape, the fastest accurate backend: its name in the cell, colour = its speedup over the baseline."""
    path = Path(path)
    if best.empty:
        _empty(path, "no measured cell passed the accuracy check")
        return
    models = sorted(best["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(1.9 * best["seq_len"].nunique() + 2.5, 0.75 * best["batch"].nunique() + 1.6),
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        frame = best[best["model"] == model]
        grid = frame.pivot_table(index="batch", columns="seq_len", values="speedup")

        labels = frame.assign(label=[verdict_label(r) for r in frame.itertuples()]).pivot_table(
            index="batch", columns="seq_len", values="label", aggfunc="first").reindex_like(grid)
        sns.heatmap(grid, annot=labels, fmt="", cmap="RdYlGn", norm=speedup_norm(frame["speedup"]),
                    linewidths=0.5, annot_kws={"fontsize": 7}, cbar_kws={"label": "speedup vs baseline"}, ax=ax)
        ax.set_title(model)
        ax.set_xlabel("seq_len")
        ax.set_ylabel("batch")
    fig.suptitle(f"Fastest accurate backend per shape (speedup vs {baseline['backend']} {baseline['precision']}, "
                 "95% interval; A ≈ B: a tie)", y=1.04)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def throughput_vs_batch(cells: pd.DataFrame, path: Path) -> None:
    """Sequences/s vs batch size, one panel per seq_len, one line per backend/precision (log-log)."""
    path = Path(path)
    ok = _measured_series(cells, path)
    if ok is None:
        return
    grid = sns.FacetGrid(ok, col="seq_len", hue="series", height=3.2, aspect=1.2, sharey=False)
    grid.map_dataframe(sns.lineplot, x="batch", y="sequences_per_s", marker="o")
    _finish_log_log(grid, sorted(ok["batch"].unique()), "seq_len {col_name}", "batch",
                    "sequences / s (x seq_len = tokens / s)", path)


def roofline_plot(roofline: pd.DataFrame, peaks: dict | None, path: Path) -> None:
    """Achieved FLOP/s vs arithmetic intensity per cell, under the measured roofs of each precision."""
    path = Path(path)
    frame = roofline.dropna(subset=["floor_ms"]) if not roofline.empty else roofline
    if frame.empty or not peaks:
        _empty(path, "no roofline: no measured cell or no measured device peaks")
        return
    frame = frame.assign(series=frame["backend"] + " · " + frame["precision"],
                         tflops=frame["achieved_flops_per_s"] / 1e12)
    fig, ax = plt.subplots(figsize=(8, 5))
    sns.scatterplot(frame, x="intensity_flops_per_byte", y="tflops", hue="series", style="precision", ax=ax)
    lo, hi = frame["intensity_flops_per_byte"].min() / 2, frame["intensity_flops_per_byte"].max() * 2
    bandwidth = peaks["copy_bytes_per_s"]
    for name, flops in sorted((peaks.get("matmul_flops_per_s") or {}).items()):
        xs = [lo, flops / bandwidth, hi]
        ax.plot(xs, [min(x * bandwidth, flops) / 1e12 for x in xs], "--", linewidth=1, label=f"roof {name}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs / minimum byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title("Roofline: every measured cell under the device's measured peaks")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


BOUND_COLOURS = {"host-bound": "#d73027", "mixed": "#e0a800", "gpu-bound": "#1a9850", "no GPU share": "#4c72b0"}
RATIO_TICKS = ([0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0], [0.95, 0.98, 1.0, 1.02, 1.05])


def _series(frame: pd.DataFrame) -> pd.Series:
    """backend · precision, prefixed by the model when the tables hold more than one."""
    series = frame["backend"] + " · " + frame["precision"]
    return frame["model"] + " · " + series if frame["model"].nunique() > 1 else series


def round_spread(rounds: pd.DataFrame, cells: pd.DataFrame, path: Path) -> None:
    """Each round's median over its cell's median, one dot per round, per backend × precision.

    The ratio is only a rescaling for the picture (every cell on one axis); the spread it shows is the one
    cells.csv summarizes as between_round_cv and round_spread. Dots are coloured by the GPU busy class where
    there is one, because host-bound cells are the ones expected to spread."""
    path = Path(path)
    ok = cells[cells["status"] == "ok"][[c for c in [*KEY, "median_ms", "bound"] if c in cells.columns]]
    ok = ok.rename(columns={"median_ms": "cell_ms"})
    frame = rounds.merge(ok, on=KEY, how="inner") if not rounds.empty else rounds
    if frame.empty:
        _empty(path, "no measured cells: no rounds")
        return
    bound = frame["bound"].astype(object).fillna("no GPU share") if "bound" in frame else "no GPU share"
    frame = frame.assign(series=_series(frame), ratio=frame["median_ms"] / frame["cell_ms"], bound=bound)
    order = sorted(frame["series"].unique())
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(order) + 2.5), 3.6))
    hue = "bound" if frame["bound"].nunique() > 1 or frame["bound"].iloc[0] != "no GPU share" else None
    sns.stripplot(frame, x="series", y="ratio", order=order, hue=hue, jitter=0.25, size=3.5, alpha=0.75, ax=ax,
                  palette={k: v for k, v in BOUND_COLOURS.items() if k in set(frame["bound"])} if hue else None,
                  hue_order=[k for k in BOUND_COLOURS if k in set(frame["bound"])] if hue else None)
    ax.axhline(1.0, color="#555", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    coarse, fine = ([t for t in ticks if low <= t <= high] for ticks in RATIO_TICKS)
    ax.set_yticks(coarse if len(coarse) >= 3 else sorted(set(coarse + fine)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("")
    ax.set_ylabel("round median / cell median")
    ax.tick_params(axis="x", labelrotation=30)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    if hue:
        ax.legend(title="GPU busy class", fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title("Between-round spread: every round of every measured cell")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def gpu_busy_heatmap(cells: pd.DataFrame, path: Path) -> None:
    """GPU busy share per backend · precision (rows) × shape (columns), 0 (GPU idle) to 1 (never waits)."""
    path = Path(path)
    share = pd.to_numeric(cells.get("gpu_busy_share", pd.Series(index=cells.index, dtype=float)), errors="coerce")
    frame = cells.assign(share=share).dropna(subset=["share"])
    if frame.empty:
        _empty(path, "no GPU busy share: no cell ran on a GPU")
        return
    frame = frame.assign(series=_series(frame),
                         shape="b" + frame["batch"].astype(str) + " s" + frame["seq_len"].astype(str))
    columns = frame.sort_values(["batch", "seq_len"])["shape"].unique()
    grid = frame.pivot_table(index="series", columns="shape", values="share", aggfunc="first").reindex(columns=columns)
    fig, ax = plt.subplots(figsize=(0.62 * len(columns) + 3.5, 0.38 * len(grid) + 1.6))
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="RdYlGn", vmin=0.0, vmax=1.0, linewidths=0.5,
                annot_kws={"fontsize": 7}, cbar_kws={"label": "GPU busy share"}, ax=ax)
    ax.set_xlabel("shape (batch, seq_len)")
    ax.set_ylabel("")
    ax.set_title(f"GPU busy share (device busy / latency; ≥ {gpu_busy.GPU_BOUND_FROM:g} gpu-bound, "
                 f"< {gpu_busy.HOST_BOUND_BELOW:g} host-bound)")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


FIGURES = {"verdict_heatmap": "verdict_heatmap.png", "speedup_heatmap": "speedup_heatmap.png",
           "latency_vs_seq_len": "latency_vs_seq_len.png", "throughput_vs_batch": "throughput_vs_batch.png",
           "roofline": "roofline.png", "round_spread": "round_spread.png", "gpu_busy_share": "gpu_busy_share.png"}


def write_all(tables: dict[str, pd.DataFrame], baseline: dict, out_dir: Path, peaks: dict | None = None) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / filename for name, filename in FIGURES.items()}
    verdict_heatmap(tables["best"], paths["verdict_heatmap"], baseline)
    speedup_heatmap(tables["speedup"], paths["speedup_heatmap"], baseline)
    latency_vs_seq_len(tables["cells"], paths["latency_vs_seq_len"])
    throughput_vs_batch(tables["cells"], paths["throughput_vs_batch"])
    roofline_plot(tables["roofline"], peaks, paths["roofline"])
    round_spread(tables["rounds"], tables["cells"], paths["round_spread"])
    gpu_busy_heatmap(tables["cells"], paths["gpu_busy_share"])
    return paths
