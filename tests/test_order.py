"""infbench.measure.order on simulated rounds: the cell that switches a replay's level is found among cells whose
order is shuffled like the pipeline's, and a level that only drifts with the position names no cell."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from scipy import stats as scipy_stats

from infbench.measure import order

CELLS = [("eager", "fp32"), ("eager", "fp16"), ("ort-cuda", "fp16"), ("inductor", "fp16"),
         ("eager-cuda-graph", "fp16"), ("ort-cuda-graph", "fp16")]
GRAPH_MS = {"eager-cuda-graph": 0.66, "ort-cuda-graph": 0.46}


def simulated_rounds(seed: int, switch: str | None = "ort-cuda/fp16", delay: int = 2, step_at: int | None = None) -> pd.DataFrame:
    """Nine rounds of one shape: a graph replay is on its low level until ``delay`` windows after ``switch``'s
    window in the round, then 10 % slower (no switch: always low); with ``step_at`` instead, 10 % slower from
    that position on (a level that follows the position, not a cell); the other cells are steady."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    rows = []
    for index in range(9):
        order = CELLS[:]
        rng.shuffle(order)
        switched_at = next((p for p, (b, q) in enumerate(order) if f"{b}/{q}" == switch), len(order))
        for position, (backend, precision) in enumerate(order):
            base = GRAPH_MS.get(backend, 3.0)
            slow = backend in GRAPH_MS and position >= (switched_at + delay if step_at is None else step_at)
            level = 1.10 if slow else 1.0
            rows.append({"model": "m", "backend": backend, "precision": precision, "batch": 1, "seq_len": 128,
                         "session": "s", "round": index, "position": position,
                         "median_ms": base * level * np.exp(noise.normal(0, 0.002))})
    return pd.DataFrame(rows)


def test_the_switching_cell_leads_and_holds_at_every_position():
    seen = pd.concat([order.windows(simulated_rounds(seed), "graph") for seed in range(12)])
    table = order.predictors(seen)
    top = table.iloc[0]
    assert top.earlier_in_round == "ort-cuda/fp16" and top.significant
    assert top.low_share_after < 0.5 < top.low_share_not_after and top.difference < -0.4
    assert table.significant.sum() == 1  # the cells that merely come early with it are not named
    positions = order.by_position(seen, "ort-cuda")
    assert (positions[("mean", "not after")].dropna() == 1.0).all()  # never switched: always low


def test_a_level_that_follows_the_position_names_no_cell():
    """Later windows have more cells before them: a level that drifts with the position alone makes every
    cell look like a predictor in a plain 2 x 2 test; stratified by position, none is named."""
    named = 0
    for seed in range(20):
        rounds = pd.concat([simulated_rounds(100 * seed + s, switch=None, step_at=3).assign(session=f"s{s}")
                            for s in range(4)])
        seen = order.windows(rounds, "graph")
        assert len(seen) > 50 and 0.2 < seen.low.mean() < 0.8  # two levels found, from the position alone
        named += int(order.predictors(seen).significant.sum())
    assert named <= 1


def test_the_stratified_test_is_the_mantel_haenszel_one():
    """One stratum: the Mantel-Haenszel statistic is Yates' chi-square times (n - 1) / n (hypergeometric
    variance), so it is checked against scipy's; strata add their deviations and variances."""
    rng = np.random.default_rng(0)
    low, after = rng.random(60) < 0.5, rng.random(60) < 0.4
    table = [[np.sum(low & after), np.sum(~low & after)], [np.sum(low & ~after), np.sum(~low & ~after)]]
    yates = scipy_stats.chi2_contingency(table, correction=True)[0]
    assert order.stratified_p(low, after, np.zeros(60)) == pytest.approx(scipy_stats.chi2.sf(yates * 59 / 60, 1))
    assert order.stratified_p(low, np.zeros(60, bool), np.zeros(60)) == 1.0  # no window after the candidate
    perfect = np.tile([True, False], 30)
    assert order.stratified_p(perfect, perfect, np.repeat(np.arange(6), 10)) < 1e-9


def test_cells_without_two_levels_give_no_windows():
    steady = simulated_rounds(0)
    steady["median_ms"] = steady.groupby("backend").median_ms.transform("median")
    assert order.windows(steady).empty
    assert order.predictors(order.windows(pd.DataFrame())).empty
