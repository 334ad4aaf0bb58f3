"""tools/diagnostics/level_predictors.py on simulated rounds: the cell that switches a replay's level is found,
at every position, among cells whose order is shuffled like the pipeline's."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "diagnostics" / "level_predictors.py"
spec = importlib.util.spec_from_file_location("level_predictors", SCRIPT)
level_predictors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(level_predictors)

CELLS = [("eager", "fp32"), ("eager", "fp16"), ("ort-cuda", "fp16"), ("inductor", "fp16"),
         ("eager-cuda-graph", "fp16"), ("ort-cuda-graph", "fp16")]
GRAPH_MS = {"eager-cuda-graph": 0.66, "ort-cuda-graph": 0.46}


def simulated_rounds(seed: int, switch: str = "ort-cuda/fp16", delay: int = 2) -> pd.DataFrame:
    """Nine rounds of one shape: a graph replay is on its low level until ``delay`` windows after ``switch``'s
    window in the round, then 10 % slower; the other cells are steady."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    rows = []
    for index in range(9):
        order = CELLS[:]
        rng.shuffle(order)
        switched_at = next(p for p, (b, q) in enumerate(order) if f"{b}/{q}" == switch)
        for position, (backend, precision) in enumerate(order):
            base = GRAPH_MS.get(backend, 3.0)
            slow = backend in GRAPH_MS and position >= switched_at + delay
            rows.append({"model": "m", "backend": backend, "precision": precision, "batch": 1, "seq_len": 128,
                         "session": "s", "round": index, "position": position,
                         "median_ms": base * (1.10 if slow else 1.0) * np.exp(noise.normal(0, 0.002))})
    return pd.DataFrame(rows)


def test_the_switching_cell_leads_and_holds_at_every_position():
    seen = pd.concat([level_predictors.windows(simulated_rounds(seed), "graph") for seed in range(12)])
    table = level_predictors.predictors(seen)
    top = table.iloc[0]
    assert top.earlier_in_round == "ort-cuda/fp16"
    assert top.low_share_after < 0.5 < top.low_share_not_after and top.difference < -0.4
    # a cell that merely comes early is weaker than the switch
    assert all(abs(d) < abs(top.difference) for d in table.difference[1:])
    positions = level_predictors.by_position(seen, "ort-cuda")
    assert (positions[("mean", "not after")].dropna() == 1.0).all()  # never switched: always low


def test_cells_without_two_levels_give_no_windows():
    steady = simulated_rounds(0)
    steady["median_ms"] = steady.groupby("backend").median_ms.transform("median")
    assert level_predictors.windows(steady).empty


def test_the_command_reads_runs_and_names_a_bad_argument(tmp_path):
    for seed in range(3):
        simulated_rounds(seed).to_csv(tmp_path / f"r{seed}.csv", index=False)
    runs = [f"run{seed}={tmp_path / f'r{seed}.csv'}" for seed in range(3)]
    done = subprocess.run([sys.executable, str(SCRIPT), "--backends", "graph", *runs, "--out", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, check=True)
    assert "ort-cuda/fp16" in done.stdout
    assert pd.read_csv(tmp_path / "p.csv").earlier_in_round[0] == "ort-cuda/fp16"
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "r0.csv")], capture_output=True, text=True)
    assert bad.returncode != 0 and "runs:" in bad.stderr and "LABEL=path" in bad.stderr
