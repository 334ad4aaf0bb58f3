# Shared by every rule: config validation, the matrix, wildcard constraints and input/params functions.
# Functions here hold exactly what a job's output depends on (docs/faults.md: "What reruns when you change something").

import os
import sys

sys.path.insert(0, workflow.basedir)

from infbench import config as matrix
from infbench import aoti, devices, engines, names, trt_build, worker
from infbench.environment import detect_device
from infbench.workloads.generate import footprint, ort_build, ort_export
from snakemake.settings.types import DeploymentMethod

USE_CONTAINERS = DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
try:
    matrix.validate(config)
    matrix.check_models(config)
    matrix.check_generation_models(config)
    matrix.check_opset(config)
    if USE_CONTAINERS:
        matrix.check_containers(config)
except matrix.ConfigError as error:
    raise WorkflowError(str(error)) from None
# Jobs import the library and scripts/ from this checkout (no install needed) and share one inductor cache per
# results tree, so that a rerun loads what the last run compiled. Set at parse time (it also holds where a
# cluster job re-parses this file on its node), and set, not defaulted: importing transformers or torch (the
# model validation above does, when .snakemake/infbench has not cached it) points TORCHINDUCTOR_CACHE_DIR at
# /tmp/torchinductor_$USER, so a first run compiled into /tmp and the next one, which skipped validation,
# compiled everything again into results/ (seen on the H100: max-autotune 250 s per shape in the "warm" rerun).
# (Not before the validation: torch creates the directory on import, and bad input must leave no results/.)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])),
                  TORCHINDUCTOR_CACHE_DIR=os.path.abspath("results/cache/inductor"))
# Nothing is downloaded unless a model entry names a hub id.
if not matrix.uses_hub(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


# The software of every rule, for `--sdm conda`; the pinned pip environment of `make` is the same list.
ENV = "../envs/infbench.yaml"
DEVICE = detect_device() if config["device"] == "auto" else config["device"]


def container_image(key):
    """A configured image; a local file is made absolute and must exist when containers are used. Without
    containers, none: Snakemake checks every rule's image value even where it never uses one (a path with a
    space stopped runs that use no container)."""
    if not USE_CONTAINERS:
        return None
    image = config["containers"][key]
    if "://" in image:
        return image
    path = os.path.abspath(image)
    if not os.path.isfile(path):
        raise WorkflowError(f"invalid config: containers.{key}: image file {image!r} does not exist "
                            f"(build it: apptainer build {image} containers/{key}.def)")
    return path


COMPUTE_IMAGE = container_image("gpu" if DEVICE == "cuda" else "cpu")
REPORT_IMAGE = container_image("report") if config["containers"]["report"] else COMPUTE_IMAGE
if USE_CONTAINERS:
    # the image files are hashed here, on the host (inside, an image outside the bound paths is invisible)
    from infbench.environment import export_image_hashes

    export_image_hashes([COMPUTE_IMAGE, REPORT_IMAGE])
if USE_CONTAINERS and not os.path.abspath(".").startswith(workflow.basedir):
    # jobs import the library and scripts/ from this checkout: make it visible inside the containers
    workflow.deployment_settings.apptainer_args += f" --bind {workflow.basedir}"
CELLS = matrix.cells(config)
# On the CPU a timing job takes every core: nothing else runs beside it, and its threads are pinned to that count.
BENCH_THREADS = 1 if devices.scheduled(DEVICE) else workflow.cores
# Who runs beside whom.
# - CPU: a timing job holds the single 'timing_slots' unit and every core: nothing else runs beside it.
# - GPU host (local): a lock, not a resource (infbench/devices.py). Every timing round holds the host's lock
#   exclusively; all heavy work -- shape sessions' preparation, model builds, ONNX export / fusion /
#   conversion, engine and AOTInductor builds, fp64 references -- holds it shared. So heavy jobs and the
#   sessions' preparation run in parallel on the host's cores, and rounds run alone, the shapes taking
#   turns. Measured (tools/overlap-check.sh on an H100): a busy CPU moved launch-bound cells by 8-30 %.
#   Shape sessions run side by side (one core each), spread over the GPUs by memory; `--resources
#   sessions=K` bounds how many hold prepared cells at once (device memory).
# - Cluster: each job gets its own allocation; a job that uses a GPU asks for one ('gpu': sbatch --gpus=1)
#   and leases it inside (infbench/devices.py: a node with several GPUs is safe).
def _cluster_gpu(wildcards):
    # evaluated per job, once Snakemake knows its executor (at parse time it does not yet)
    return 0 if workflow.local_exec else 1


TIMING = {"gpu": _cluster_gpu, "sessions": 1} if devices.scheduled(DEVICE) else {"timing_slots": 1}
GPU_WORK = {"gpu": _cluster_gpu} if DEVICE == "cuda" else {}

NAME = "[A-Za-z0-9][A-Za-z0-9_-]*"


wildcard_constraints:
    model=NAME,
    backend=NAME,
    precision="fp32|fp16|bf16",
    batch="[1-9][0-9]*",
    seq_len="[1-9][0-9]*",
    prompt_len="[1-9][0-9]*",
    new_tokens="[1-9][0-9]*",


CELL_PATH = "{model}/{backend}/{precision}/b{batch}_s{seq_len}"


SHAPE_PATH = "{model}/b{batch}_s{seq_len}"


def record_paths():
    return [f"results/cells/{CELL_PATH}.json".format(**vars(cell)) for cell in CELLS]


def model_spec(wildcards):
    return matrix.canonical(config["models"][wildcards.model])


def backend_entry(wildcards):
    return config["backends"][wildcards.backend]


def shape_cells(wildcards):
    """The cells of one shape job: every backend and precision of the matrix at (model, batch, seq_len)."""
    shape = (wildcards.model, int(wildcards.batch), int(wildcards.seq_len))
    return [c for c in CELLS if (c.model, c.batch, c.seq_len) == shape]


def cell_artifacts(model, backend, precision, batch, seq_len):
    """The ONNX graph, TensorRT plan or AOTInductor package a cell reads (none for torch engines and
    unsupported cells)."""
    entry = config["backends"][backend]
    engine = engines.get(entry["engine"])
    # an unsupported cell records so without reading a graph or an engine: never build one for it
    if engine.supports(precision, DEVICE):
        return {}
    artifacts = {}
    graph = engine.graph(entry["options"], precision)
    if graph:
        artifacts["graph"] = f"results/onnx/{model}/{graph}.onnx"
    if hasattr(engine, "plan_graph"):
        profile = f"b{batch}_s{seq_len}" if entry["options"].get("per_shape") else "grid"
        artifacts["engine"] = f"results/engines/{model}/{backend}/{precision}/{profile}.plan"
    if getattr(engine, "COMPILED_AHEAD", False):
        spec = aoti_spec(model, backend, precision, batch, seq_len)
        artifacts["package"] = str(aoti.package_path(f"results/compiled/{model}", spec["key"]))
    return artifacts


def aoti_spec(model, backend, precision, batch, seq_len):
    entry = config["backends"][backend]
    batches, seq_lens = zip(*matrix.shapes(config, backend))
    return aoti.package_spec(matrix.canonical(config["models"][model]), backend, entry["options"], precision,
                             shape=(batch, seq_len), grid=(batches, seq_lens))


def aoti_params(wildcards):
    """The AOTInductor packages a model's matrix needs (compile_aoti), one per key."""
    specs = {}
    for c in CELLS:
        # the cells that load a package are the ones cell_artifacts gives one (supported, compiled ahead)
        if c.model == wildcards.model and "package" in cell_artifacts(c.model, c.backend, c.precision, c.batch, c.seq_len):
            spec = aoti_spec(c.model, c.backend, c.precision, c.batch, c.seq_len)
            specs.setdefault(spec["key"], spec)
    return matrix.canonical(sorted(specs.values(), key=lambda s: s["key"]))


def shape_inputs(wildcards):
    cells = [cell_artifacts(c.model, c.backend, c.precision, c.batch, c.seq_len) for c in shape_cells(wildcards)]
    inputs = {
        "manifest": f"results/models/{wildcards.model}/manifest.json",
        "reference": f"results/reference/{wildcards.model}/b{wildcards.batch}_s{wildcards.seq_len}.npz",
        "artifacts": sorted({path for a in cells for name, path in a.items() if name != "package"}),
    }
    if any("package" in a for a in cells):
        # the model's index: rewritten whenever its set of packages changes (built ones are reused by key),
        # which re-measures the model's shapes that load packages
        inputs["packages"] = f"results/compiled/{wildcards.model}/index.json"
    return inputs


def backend_profile(backend):
    """The TensorRT optimization profile spanning a backend's grid (min / opt / max)."""
    batches, seq_lens = zip(*matrix.shapes(config, backend))
    return trt_build.profile_from_grid(list(batches), list(seq_lens))


def engine_graph(wildcards):
    entry = backend_entry(wildcards)
    graph = engines.get(entry["engine"]).plan_graph(entry["options"], wildcards.precision)
    return f"results/onnx/{wildcards.model}/{graph}.onnx"


# What an engine depends on besides its graph: library and version, precision, profile, build options (not
# runtime ones such as cuda_graph). A new library version rebuilds it.
BUILD_OPTIONS = ("library", "tf32", "builder_optimization_level", "workspace_gib")


def engine_build_params(wildcards):
    entry = backend_entry(wildcards)
    options = {k: v for k, v in entry["options"].items() if k in BUILD_OPTIONS}
    if wildcards.profile == "grid":
        profile = backend_profile(wildcards.backend)
    else:
        batch, seq_len = (int(part[1:]) for part in wildcards.profile.split("_"))
        profile = {"min": [batch, seq_len], "opt": [batch, seq_len], "max": [batch, seq_len]}
    return matrix.canonical({"library": options["library"], "library_version": trt_build.library_version(options["library"]),
                             "precision": wildcards.precision, "profile": profile, "options": options})


def cell_options(backend, entry, model=None, precision=None):
    """The backend's options; ORT's TensorRT provider also gets its explicit profile and engine cache."""
    options = dict(entry["options"])
    if entry["engine"] == "onnxruntime" and options.get("provider") == "tensorrt":
        options["profile"] = backend_profile(backend)
        options["engine_cache_dir"] = f"results/cache/ort-trt/{model}/{backend}/{precision}"
    return options


def shape_params(wildcards):
    """Everything the shape's numbers depend on besides its input files. The cells of a shape are measured
    together (interleaved rounds), so a change to any of them reruns the shape's timing; preparation
    (export, fusion, engines) still reruns only where its own inputs changed."""
    cells = []
    for c in shape_cells(wildcards):
        entry = config["backends"][c.backend]
        key = {"model": c.model, "backend": c.backend, "engine": entry["engine"], "precision": c.precision,
               "batch": c.batch, "seq_len": c.seq_len}
        cells.append({"key": key, "options": cell_options(c.backend, entry, c.model, c.precision),
                      "tolerance": config["accuracy"]["tolerance"][c.precision],
                      **cell_artifacts(c.model, c.backend, c.precision, c.batch, c.seq_len)})
    return matrix.canonical({"device": DEVICE, "timing": config["timing"], "stability": config["stability"],
                             "cells": cells})


# The generation workload (rules/generate.smk).
GEN_CELLS = matrix.generation_cells(config)
GEN_SHAPE_PATH = "{model}/b{batch}_p{prompt_len}_n{new_tokens}"
GEN_CELL_PATH = "{model}/{backend}/{precision}/b{batch}_p{prompt_len}_n{new_tokens}"


def generation_record_paths():
    return [f"results/cells/{GEN_CELL_PATH}.json".format(**vars(cell)) for cell in GEN_CELLS]


def generation_request(wildcards):
    """Everything a generation shape's numbers depend on besides the device's peaks: the model's spec, the
    timing policy, and every cell of the shape (a change to any reruns the shape, keeping its rounds paired)."""
    section = config["generation"]
    shape = (wildcards.model, int(wildcards.batch), int(wildcards.prompt_len), int(wildcards.new_tokens))
    cells = [{"key": {"workload": "generate", "model": c.model, "backend": c.backend, "engine": c.engine,
                      "precision": c.precision, "batch": c.batch, "prompt_len": c.prompt_len,
                      "new_tokens": c.new_tokens},
              "options": generation_cell_options(c)}
             for c in GEN_CELLS if (c.model, c.batch, c.prompt_len, c.new_tokens) == shape]
    # the model's spec without its batch sizes: adding a batch size leaves the other batches' sessions alone
    spec = {k: v for k, v in section["models"][wildcards.model].items() if k != "batch_sizes"}
    return matrix.canonical({"device": DEVICE, "spec": spec, "timing": config["timing"],
                             "stability": config["stability"], "seed": config["inputs"]["seed"], "batch": shape[1],
                             "prompt_len": shape[2], "new_tokens": shape[3], "cells": cells})


# The ONNX Runtime generation backends' model directories (rules/generate_ort.smk): one per (model, engine and
# its build options -- the exported decoder's attention --, precision), for the cells that read one
# (ort_build.needs_build: not an unsupported cell, nor where the library is missing); each shape session that has
# such cells takes them as inputs.
def generation_artifact(cell):
    """The manifest a generation cell reads, or None."""
    spec = config["generation"]["models"][cell.model]
    options = config["generation"]["backends"][cell.backend]["options"]
    if not ort_build.needs_build(cell.engine, spec, cell.precision, DEVICE, options):
        return None
    return ort_build.artifact_path(cell.engine, cell.model, cell.precision, options)


def generation_artifacts(wildcards):
    """The directories (manifests) a generation shape session reads: only its ORT cells'."""
    shape = (wildcards.model, int(wildcards.batch), int(wildcards.prompt_len), int(wildcards.new_tokens))
    paths = {generation_artifact(c) for c in GEN_CELLS if (c.model, c.batch, c.prompt_len, c.new_tokens) == shape}
    return sorted(p for p in paths if p)


# What a generation job holds (infbench/workloads/generate/footprint.py), as resources the run bounds with
# `--resources gpu_mem_gb=<the GPUs' memory> build_disk_gb=<free disk>` (tools/offline-gpu-run.sh, make
# gpu-report): a 7B session with its ONNX Runtime copies fills most of an 80 GB GPU, and a 7B export most of a
# small disk, so such jobs wait for each other instead of failing. Unbounded where the run names no limit.
def generation_gpu_gb(wildcards):
    spec = config["generation"]["models"][wildcards.model]
    shape = (wildcards.model, int(wildcards.batch), int(wildcards.prompt_len), int(wildcards.new_tokens))
    backends = config["generation"]["backends"]
    cells = [(ort_build.build_name(c.engine, backends[c.backend]["options"]), c.precision) for c in GEN_CELLS
             if (c.model, c.batch, c.prompt_len, c.new_tokens) == shape]
    return footprint.session_gb(spec, cells, *shape[1:])


def ort_build_gb(engine, what):
    def need(wildcards):
        return footprint.build_gb(config["generation"]["models"][wildcards.model], engine, wildcards.precision)[what]

    return need


# On a GPU only: the estimates import torch and transformers in Snakemake's own process, seconds that a CPU
# run of small models need not pay (its builds still check the disk before they write: ort_build.room).
GEN_SESSION_MEMORY = {"gpu_mem_gb": generation_gpu_gb} if DEVICE == "cuda" else {}


def ort_build_resources(engine):
    if DEVICE != "cuda":
        return {}
    return {**GPU_WORK, "gpu_mem_gb": ort_build_gb(engine, "gpu_mem_gb"), "build_disk_gb": ort_build_gb(engine, "disk_gb")}


def generation_cell_options(cell):
    """A generation cell's options as its request carries them: the backend's, and the manifest it reads."""
    options = dict(config["generation"]["backends"][cell.backend]["options"])
    artifact = generation_artifact(cell)
    if artifact:
        options["artifact"] = artifact
    return options


def ort_build_params(engine, wildcards, options=None):
    spec = config["generation"]["models"][wildcards.model]
    return matrix.canonical(ort_build.build_params(engine, spec, wildcards.precision, DEVICE, options))


def ort_genai_params(wildcards):
    return ort_build_params("ort_genai", wildcards)


def export_decoder_params(wildcards):
    return ort_build_params("ort_decoder", wildcards, {"attention": wildcards.attention})
