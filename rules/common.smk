# Shared by every rule: config validation, the matrix, wildcard constraints and input/params functions.
# Functions here hold exactly what a job's output depends on (see "Invalidation" in the README).

import os
import sys

sys.path.insert(0, workflow.basedir)

from infbench import config as matrix
from infbench import engines, worker
from infbench.environment import detect_device

try:
    matrix.validate(config)
except matrix.ConfigError as error:
    raise WorkflowError(str(error)) from None

# Jobs import the library and scripts/ from this checkout (no install needed) and share one inductor cache per results tree.
# (Set here, at parse time, so that it also holds where a cluster job re-parses this file on its node.)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.abspath("results/cache/inductor"))

# The software of every rule, for `--sdm conda`; the pinned pip environment of `make` is the same list.
ENV = "../envs/infbench.yaml"
DEVICE = detect_device() if config["device"] == "auto" else config["device"]
CELLS = matrix.cells(config)
# On the CPU a timing job takes every core: nothing else runs beside it, and its threads are pinned to that count.
BENCH_THREADS = workflow.cores if DEVICE == "cpu" else 1
# On a GPU the reference (fp64 on the device) would disturb a timing job: it takes the timing slot too.
REFERENCE_SLOTS = 1 if DEVICE == "cuda" else 0

NAME = "[A-Za-z0-9][A-Za-z0-9_-]*"


wildcard_constraints:
    model=NAME,
    backend=NAME,
    precision="fp32|fp16|bf16",
    batch="[1-9][0-9]*",
    seq_len="[1-9][0-9]*",


CELL_PATH = "{model}/{backend}/{precision}/b{batch}_s{seq_len}"


def record_paths():
    return [f"results/cells/{CELL_PATH}.json".format(**vars(cell)) for cell in CELLS]


def model_spec(wildcards):
    return matrix.canonical(config["models"][wildcards.model])


def backend_entry(wildcards):
    return config["backends"][wildcards.backend]


def bench_inputs(wildcards):
    inputs = {
        "manifest": f"results/models/{wildcards.model}/manifest.json",
        "reference": f"results/reference/{wildcards.model}/b{wildcards.batch}_s{wildcards.seq_len}.npz",
    }
    entry = backend_entry(wildcards)
    engine = engines.get(entry["engine"])
    graph = engine.graph(entry["options"], wildcards.precision)
    # an unsupported cell records so without reading a graph: never build one for it
    if graph and not engine.supports(wildcards.precision, DEVICE):
        inputs["graph"] = f"results/onnx/{wildcards.model}/{graph}.onnx"
    return inputs


def graph_flag(wildcards, input):
    return ["--graph", input.graph] if "graph" in input.keys() else []


def cell_params(wildcards):
    """Everything a cell's number depends on besides its input files: a change here reruns that cell only."""
    entry = backend_entry(wildcards)
    return matrix.canonical(
        {
            "key": {
                "model": wildcards.model,
                "backend": wildcards.backend,
                "engine": entry["engine"],
                "precision": wildcards.precision,
                "batch": int(wildcards.batch),
                "seq_len": int(wildcards.seq_len),
            },
            "options": entry["options"],
            "device": DEVICE,
            "timing": config["timing"],
            "tolerance": config["accuracy"]["tolerance"][wildcards.precision],
        }
    )
