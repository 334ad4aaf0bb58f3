"""Does a window's level follow what the session timed before it in its round?

Why: some cells' round medians sit at one of two levels (``spread.levels``: small CUDA-graph replays on the
H100, ~10 % apart), and the levels are not noise. Within a round, a replay's window is on the fast level until
the session has timed an ONNX Runtime CUDA window without graphs, and mostly on the slow one after it (14 H100
runs: 92 % vs 19 % of 1,393 windows; report/reference/h100/reproducibility). The rounds record each window's
position, so a run's own rounds can say which cell, timed earlier, goes with the slow level. A cell alone has
too few rounds for it (7 rounds, 13 candidates: a perfect split by chance one time in ten), so the windows of
all two-level cells of a run are pooled.

Why a test stratified by position (Cochran-Mantel-Haenszel): a later window has more cells before it, so any
level that drifts with the position would make every cell look like a predictor; within one position, which
cells came before is the shuffle's draw. A candidate is named where that test, corrected for the number of
candidates (Bonferroni), rejects independence, one at a time (``predictors``). scipy has no stratified 2 x 2
test; statsmodels' would be a dependency for ten lines.

This shows association, not cause: a candidate is tested on the GPU by putting its window, alone, between
probe windows of the replay (report/reference/h100/NOTES.md: the bisect found no single cell that switches it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _scipy

from infbench.measure import spread

KEY = ["backend", "precision", "batch", "seq_len"]
SIGNIFICANCE = 0.01  # family-wise, over the candidates (Bonferroni)


def windows(rounds: pd.DataFrame, backends: str = "", only: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per window of a two-level cell (of a backend matching the regular expression ``backends``, and
    among ``only``'s rows where given): the cell ('backend/precision'), its shape, position, level (``low``: on
    the faster level) and every cell timed before it in its round (``before``: a frozenset of
    'backend/precision'), whichever cells were classified."""
    columns = ["cell", "batch", "seq_len", "position", "low", "before"]
    if rounds.empty:
        return pd.DataFrame(columns=columns)
    rounds = rounds.assign(cell=rounds["backend"] + "/" + rounds["precision"])
    earlier = {key: group for key, group in rounds.groupby(["session", "round"])}
    classified = rounds[rounds["backend"].str.contains(backends)]
    if only is not None:
        classified = classified.merge(only[KEY].drop_duplicates(), on=KEY)
    rows = []
    for _, cell in classified.groupby(KEY):
        found = spread.levels(cell["median_ms"])
        if not found:
            continue
        cut = np.sqrt(found["low_ms"] * found["high_ms"])  # the clusters are tight: any point between them
        for _, window in cell.iterrows():
            same = earlier[(window["session"], window["round"])]
            rows.append({"cell": window["cell"], "batch": window["batch"], "seq_len": window["seq_len"],
                         "position": window["position"], "low": bool(window["median_ms"] < cut),
                         "before": frozenset(same["cell"][same["position"] < window["position"]])})
    return pd.DataFrame(rows, columns=columns)


def stratified_p(low: np.ndarray, after: np.ndarray, strata: np.ndarray) -> float:
    """Cochran-Mantel-Haenszel test (continuity-corrected) of independence of ``low`` and ``after`` within
    strata: the p-value of sum(a - E a)^2 / sum(Var a) against chi-square(1), a the low windows with the
    candidate before them in a stratum. 1.0 where no stratum has both kinds of window."""
    deviation = variance = 0.0
    for stratum in np.unique(strata):
        inside = strata == stratum
        lo, af = low[inside], after[inside]
        n = lo.size
        if n < 2:
            continue
        low_n, after_n = lo.sum(), af.sum()
        deviation += np.sum(lo & af) - low_n * after_n / n
        variance += low_n * (n - low_n) * after_n * (n - after_n) / (n * n * (n - 1))
    if variance <= 0:
        return 1.0
    statistic = max(0.0, abs(deviation) - 0.5) ** 2 / variance
    return float(_scipy.chi2.sf(statistic, 1))


def _association(pool: pd.DataFrame, candidate: str) -> dict:
    """The low-level shares of ``pool``'s windows with and without ``candidate`` before them, and the p-value of
    that association within positions."""
    after = pool["before"].apply(lambda before: candidate in before).to_numpy(bool)
    low = pool["low"].to_numpy(bool)
    return {"earlier_in_round": candidate, "low_share_after": low[after].mean() if after.any() else np.nan,
            "windows_after": int(after.sum()), "low_share_not_after": low[~after].mean() if (~after).any() else np.nan,
            "windows_not_after": int((~after).sum()),
            "p_value": stratified_p(low, after, pool["position"].to_numpy())}


def predictors(seen: pd.DataFrame) -> pd.DataFrame:
    """Which cells, timed earlier in a round, go with the level of the windows after them (windows at position
    >= 1: nothing precedes position 0). Named one at a time: the most significant candidate (``stratified_p``,
    Bonferroni over the candidates left) is named, and the next is sought among the windows it did not precede.

    Why one at a time: within a position the same number of cells precede a window, so a cell before it means
    the others are less often before it; next to a cell that sets the level, every other cell would look like
    it sets the opposite one. Among the windows the named cell did not precede, that shadow is gone.

    Per candidate: the low-level share of the windows with it before them and without, their counts and
    difference, and the p-value, from the step that named it (or the last step, for the others);
    ``significant``: named. Named cells first, in the order named."""
    later = seen[seen["position"] >= 1]
    remaining = sorted(set().union(*later["before"])) if len(later) else []
    rows: dict[str, dict] = {}
    named: list[str] = []
    pool = later
    while remaining and len(pool):
        step = [_association(pool, candidate) for candidate in remaining]
        rows.update({row["earlier_in_round"]: {**row, "significant": False} for row in step})
        best = min(step, key=lambda row: row["p_value"])
        if best["p_value"] >= SIGNIFICANCE / len(remaining):
            break
        rows[best["earlier_in_round"]]["significant"] = True
        named.append(best["earlier_in_round"])
        remaining.remove(best["earlier_in_round"])
        pool = pool[~pool["before"].apply(lambda before: best["earlier_in_round"] in before)]
    columns = ["earlier_in_round", "low_share_after", "windows_after", "low_share_not_after", "windows_not_after",
               "p_value", "significant"]
    others = sorted((c for c in rows if c not in named), key=lambda c: rows[c]["p_value"])
    table = pd.DataFrame([rows[c] for c in [*named, *others]], columns=columns)
    table.insert(5, "difference", table["low_share_after"] - table["low_share_not_after"])
    return table


def after_backend(seen: pd.DataFrame, backend: str) -> pd.Series:
    """'after' where a cell of ``backend`` (any precision) was timed before the window in its round, else
    'not after'."""
    after = seen["before"].apply(lambda before: any(c.split("/")[0] == backend for c in before))
    return after.map({True: "after", False: "not after"})


def by_position(seen: pd.DataFrame, backend: str) -> pd.DataFrame:
    """The low-level share by position, with and without a cell of ``backend`` earlier in the round: a backend
    that sets the level keeps its difference at every position, one that merely comes early does not."""
    return seen.groupby(["position", after_backend(seen, backend)])["low"].agg(["mean", "size"]).unstack()
