"""Figures from the tables (seaborn): each backend's latency over the fastest at every shape, the fastest of
each engine family against the baseline, the roofline, the spread of each cell's rounds, the GPU busy share.

Readable at page size: drawn at the size shown, 9–11 pt text, colour-blind-safe colours (one hue per engine
family: infbench.names), major ticks only on log axes, nothing drawn for what was not measured.

Each function writes one PNG and always writes it: with nothing measured, the figure says so, so the report
never has a hole where a figure should be.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import math  # noqa: E402

from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from infbench import names  # noqa: E402
from infbench.measure import gpu_busy  # noqa: E402
from infbench.tables import KEY  # noqa: E402

DPI = 100  # figures are drawn at the size the page shows them (≤ 1300 px wide): 9 pt text is ≥ 12 px there
LABEL_CHARS = 48  # a longer name is cut with "…" in a figure (tables keep it whole)
plt.rcParams.update({"text.parse_math": False,  # names are text: a "$" in a label is not TeX
                     "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
                     "ytick.labelsize": 9, "legend.fontsize": 9})


def short(text: str, limit: int = LABEL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _empty(path: Path, message: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, short(message, 90), ha="center", va="center")
    ax.set_axis_off()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _log_axis(axis, values) -> None:
    """A log axis with major ticks only, in plain numbers (1, 2, 5 per decade where they fall in range)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    values = values[values > 0]
    if values.empty:
        return
    lo, hi = math.floor(math.log10(values.min())), math.ceil(math.log10(values.max()))
    ticks = [m * 10**e for e in range(lo - 1, hi + 1) for m in (1, 2, 5)
             if values.min() / 1.5 <= m * 10**e <= values.max() * 1.5]
    axis.set_major_locator(FixedLocator(ticks or [values.min()]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def _shape(frame: pd.DataFrame) -> pd.Series:
    return "b" + frame["batch"].astype(int).astype(str) + " s" + frame["seq_len"].astype(int).astype(str)


def _rows(frame: pd.DataFrame) -> pd.Series:
    """display · precision, prefixed by the model when the tables hold more than one."""
    series = frame["display"] + " · " + frame["precision"]
    return (frame["model"].map(short) + " · " + series if frame["model"].nunique() > 1 else series).map(short)


def relative_heatmap(cells: pd.DataFrame, best: pd.DataFrame, path: Path) -> None:
    """Every measured backend × precision (rows) at every shape (columns): latency over the fastest accurate
    cell of that shape. One number per cell, a sequential colour-blind-safe scale (light = fast)."""
    path = Path(path)
    ok = cells[cells["status"] == "ok"]
    if ok.empty or best.empty:
        _empty(path, "no measured cell passed the accuracy check")
        return
    fastest = best.set_index(["model", "batch", "seq_len"])["median_ms"]
    ok = ok[[key in fastest.index for key in zip(ok["model"], ok["batch"], ok["seq_len"])]]
    ok = ok.assign(ratio=[m / fastest[(a, b, c)] for a, b, c, m in zip(ok["model"], ok["batch"], ok["seq_len"], ok["median_ms"])],
                   row=_rows(ok), shape=_shape(ok))
    columns = ok.sort_values(["batch", "seq_len"])["shape"].unique()
    grid = ok.pivot_table(index="row", columns="shape", values="ratio", aggfunc="first").reindex(columns=columns)
    grid = grid.loc[grid.apply(lambda row: math.exp(row.dropna().map(math.log).mean()), axis=1).sort_values().index]
    fig, ax = plt.subplots(figsize=(min(13.0, 3.8 + 0.85 * len(columns)), 0.34 * len(grid) + 1.3))
    from matplotlib.colors import LogNorm

    top = max(2.0, float(grid.max().max()))
    sns.heatmap(grid, annot=grid.map(lambda v: "" if pd.isna(v) else f"{v:.2f}"), fmt="", cmap="mako_r",
                norm=LogNorm(vmin=1.0, vmax=top), linewidths=0.5, annot_kws={"fontsize": 9},
                cbar_kws={"label": "latency / fastest (log)", "ticks": [t for t in (1, 1.25, 1.5, 2, 3, 5, 10, 20, 50) if t <= top]},
                ax=ax)
    ax.collections[0].colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.collections[0].colorbar.ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("shape (batch, sequence length)")
    ax.set_ylabel("")
    ax.set_title("Latency over the fastest accurate backend at each shape (1.00 = fastest)")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def family_latency(cells: pd.DataFrame, baseline: dict, path: Path) -> None:
    """Per shape, the fastest accurate cell of each engine family and the baseline, with their intervals."""
    path = Path(path)
    ok = cells[(cells["status"] == "ok") & cells["accuracy_passed"].astype("boolean").fillna(False).astype(bool)]
    if ok.empty:
        _empty(path, "no measured cell passed the accuracy check")
        return
    ok = ok.assign(shape=_shape(ok))
    picks = ok.loc[ok.groupby(["model", "batch", "seq_len", "family"])["median_ms"].idxmin()]
    picks = picks.assign(series=picks["family"] + " (fastest)")
    base = ok[(ok["backend"] == baseline["backend"]) & (ok["precision"] == baseline["precision"])]
    base = base.assign(series=short(f"baseline: {base['display'].iloc[0]} {baseline['precision']}") if len(base) else "")
    frame = pd.concat([picks, base]).sort_values(["batch", "seq_len"])
    models = sorted(frame["model"].unique())
    order = [s for s in [f"{f} (fastest)" for f in names.FAMILIES] if s in set(frame["series"])] + \
        [s for s in frame["series"].unique() if s.startswith("baseline")]
    colours = {f"{f} (fastest)": c for f, c in names.FAMILY_COLOURS.items()}
    fig, axes = plt.subplots(len(models), 1, figsize=(min(13.0, 4.0 + 0.9 * frame["shape"].nunique()), 3.6 * len(models)),
                             squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        mine = frame[frame["model"] == model]
        shapes = list(dict.fromkeys(mine["shape"]))
        for offset, series in enumerate(order):
            rows = mine[mine["series"] == series].set_index("shape").reindex(shapes).dropna(subset=["median_ms"])
            xs = [shapes.index(s) + (offset - (len(order) - 1) / 2) * 0.12 for s in rows.index]
            err = [rows["median_ms"] - rows["ci_lo_ms"], rows["ci_hi_ms"] - rows["median_ms"]]
            ax.errorbar(xs, rows["median_ms"], yerr=err, fmt="o" if not series.startswith("baseline") else "s",
                        color=colours.get(series, "#7F7F7F"), label=series, capsize=3, markersize=6, linewidth=1.2)
        ax.set_xticks(range(len(shapes)), shapes)
        ax.set_yscale("log")
        _log_axis(ax.yaxis, pd.concat([mine["ci_lo_ms"], mine["ci_hi_ms"], mine["median_ms"]]))
        ax.set_ylabel("latency (ms, log)")
        ax.set_xlabel("shape (batch, sequence length)")
        ax.grid(axis="y", color="#e5e5e5")
        if len(models) > 1:
            ax.set_title(short(model, 80))
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def roofline_plot(roofline: pd.DataFrame, peaks: dict | None, path: Path) -> None:
    """Achieved FLOP/s vs arithmetic intensity per cell (colour: engine family), under the roofs of each
    precision (raised where a cell beat a measured peak, as the roofline table does)."""
    path = Path(path)
    frame = roofline.dropna(subset=["floor_ms"]) if not roofline.empty else roofline
    if frame.empty or not peaks:
        _empty(path, "no roofline: no measured cell or no measured device peaks")
        return
    from infbench import roofline as rl

    frame = frame.assign(tflops=frame["achieved_flops_per_s"] / 1e12)
    achieved = [(rl.peak_key(p, False), f, b / m * 1e3) for p, f, b, m in
                zip(frame["precision"], frame["achieved_flops_per_s"], frame["min_bytes"], frame["median_ms"])]
    peaks, _ = rl.raised_peaks(peaks, achieved)
    fig, ax = plt.subplots(figsize=(9, 5))
    sns.scatterplot(frame, x="intensity_flops_per_byte", y="tflops", hue="family", style="precision",
                    palette={k: v for k, v in names.FAMILY_COLOURS.items() if k in set(frame["family"])}, s=40, ax=ax)
    lo, hi = frame["intensity_flops_per_byte"].min() / 2, frame["intensity_flops_per_byte"].max() * 2
    bandwidth = peaks["copy_bytes_per_s"]
    for name, flops in sorted((peaks.get("matmul_flops_per_s") or {}).items()):
        xs = [lo, flops / bandwidth, hi]
        ax.plot(xs, [min(x * bandwidth, flops) / 1e12 for x in xs], "--", linewidth=1, color="#555", alpha=0.6)
        ax.text(hi, flops / 1e12, f" {name}", va="center", fontsize=9, color="#555")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis, [lo, hi])
    _log_axis(ax.yaxis, frame["tflops"])
    ax.set_xlabel("arithmetic intensity (FLOPs / minimum byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.legend(bbox_to_anchor=(1.08, 1), loc="upper left", frameon=False)
    ax.set_title("Every measured cell under the device's measured roofs")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


BOUND_COLOURS = {"host-bound": "#D55E00", "mixed": "#E69F00", "gpu-bound": "#0072B2", "no GPU share": "#7F7F7F"}
RATIO_TICKS = ([0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0], [0.95, 0.98, 1.0, 1.02, 1.05])


def round_spread(rounds: pd.DataFrame, cells: pd.DataFrame, path: Path) -> None:
    """Each round's median over its cell's median, one dot per round, per backend × precision.

    The ratio is only a rescaling for the picture (every cell on one axis); the spread it shows is the one
    cells.csv summarizes as between_round_cv and round_spread. Dots are coloured by the GPU busy class where
    there is one, because host-bound cells are the ones expected to spread."""
    path = Path(path)
    ok = cells[cells["status"] == "ok"][[c for c in [*KEY, "median_ms", "bound", "display"] if c in cells.columns]]
    ok = ok.rename(columns={"median_ms": "cell_ms"})
    frame = rounds.merge(ok, on=KEY, how="inner") if not rounds.empty else rounds
    if frame.empty:
        _empty(path, "no measured cells: no rounds")
        return
    bound = frame["bound"].astype(object).fillna("no GPU share") if "bound" in frame else "no GPU share"
    frame = frame.assign(series=_rows(frame), ratio=frame["median_ms"] / frame["cell_ms"], bound=bound)
    order = sorted(frame["series"].unique())
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.6 * len(order) + 2.5)), 4.2))
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
        ax.legend(title="GPU busy class", bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False)
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
    frame = frame.assign(series=_rows(frame), shape=_shape(frame))
    columns = frame.sort_values(["batch", "seq_len"])["shape"].unique()
    grid = frame.pivot_table(index="series", columns="shape", values="share", aggfunc="first").reindex(columns=columns)
    fig, ax = plt.subplots(figsize=(min(13.0, 0.85 * len(columns) + 3.8), 0.34 * len(grid) + 1.3))
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="cividis", vmin=0.0, vmax=1.0, linewidths=0.5,
                annot_kws={"fontsize": 9}, cbar_kws={"label": "GPU busy share"}, ax=ax)
    ax.set_xlabel("shape (batch, seq_len)")
    ax.set_ylabel("")
    ax.set_title(f"GPU busy share (device busy / latency; ≥ {gpu_busy.GPU_BOUND_FROM:g} gpu-bound, "
                 f"< {gpu_busy.HOST_BOUND_BELOW:g} host-bound)")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#F0E442"]


def generation_tpot(generation: pd.DataFrame | None, path: Path) -> None:
    """Time per output token vs batch, one line per generation backend × precision (one panel per model and
    prompt length), with its interval, and the decode floor at the device's measured bandwidth (dashed)."""
    path = Path(path)
    ok = generation[generation["status"] == "ok"] if generation is not None and len(generation) else None
    if ok is None or ok.empty:
        _empty(path, "no generation cell measured")
        return
    ok = ok.assign(series=(ok["display"] + " · " + ok["precision"]).map(short))
    panels = sorted(set(zip(ok["model"], ok["prompt_len"])))
    series = sorted(ok["series"].unique())
    colours = {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(series)}
    fig, axes = plt.subplots(1, len(panels), figsize=(min(13.0, 1.5 + 4.2 * len(panels)), 3.8), squeeze=False)
    for ax, (model, prompt_len) in zip(axes[0], panels):
        mine = ok[(ok["model"] == model) & (ok["prompt_len"] == prompt_len)].sort_values("batch")
        for name, rows in mine.groupby("series", sort=True):
            err = [rows["tpot_ms"] - rows["tpot_lo_ms"], rows["tpot_hi_ms"] - rows["tpot_ms"]]
            ax.errorbar(rows["batch"], rows["tpot_ms"], yerr=err, marker="o", color=colours[name], label=name,
                        capsize=3, linewidth=1.4)
        floor = mine.groupby("batch")["floor_ms"].min().dropna()
        if len(floor):
            ax.plot(floor.index, floor.values, "--", color="#555", linewidth=1, label="bandwidth floor")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(mine["batch"].unique()), [str(b) for b in sorted(mine["batch"].unique())])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        _log_axis(ax.yaxis, pd.concat([mine["tpot_lo_ms"], mine["tpot_hi_ms"], floor]))
        ax.set_xlabel("batch (sequences)")
        ax.set_ylabel("time per output token (ms, log)")
        ax.set_title(short(f"{model} · prompt {prompt_len} · {int(mine['new_tokens'].iloc[0])} new tokens", 70))
        ax.grid(axis="y", color="#e5e5e5")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[0, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


FIGURES = {"relative_heatmap": "relative_heatmap.png", "family_latency": "family_latency.png",
           "roofline": "roofline.png", "round_spread": "round_spread.png", "gpu_busy_share": "gpu_busy_share.png",
           "generation_tpot": "generation_tpot.png"}


def write_all(tables: dict[str, pd.DataFrame], baseline: dict, out_dir: Path, peaks: dict | None = None,
              labels: dict[str, str | None] | None = None,
              generation_labels: dict[str, str | None] | None = None) -> dict[str, Path]:
    """Every figure (FIGURES) from the tables (the generation ones where present); ``labels``,
    ``generation_labels``: the config's display-name overrides."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / filename for name, filename in FIGURES.items()}
    catalogue = names.catalogue(tables["cells"], labels)
    cells = names.with_names(tables["cells"], catalogue)
    roofline = names.with_names(tables["roofline"], catalogue) if not tables["roofline"].empty else tables["roofline"]
    relative_heatmap(cells, tables["best"], paths["relative_heatmap"])
    family_latency(cells, baseline, paths["family_latency"])
    roofline_plot(roofline, peaks, paths["roofline"])
    round_spread(tables["rounds"], cells, paths["round_spread"])
    gpu_busy_heatmap(cells, paths["gpu_busy_share"])
    generation = tables.get("generation")
    if generation is not None and len(generation):
        generation = names.with_names(generation, names.catalogue(generation, generation_labels))
    generation_tpot(generation, paths["generation_tpot"])
    return paths
