# The generation workload (infbench/workloads/generate): one timing job per (model, batch, prompt_len) runs every
# generation backend and precision of it in interleaved rounds, like the forward shape jobs (rules/bench.smk);
# its bundle is split into one record per cell, and the records into the generation tables.

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
              "options": section["backends"][c.backend]["options"]}
             for c in GEN_CELLS if (c.model, c.batch, c.prompt_len, c.new_tokens) == shape]
    return matrix.canonical({"device": DEVICE, "spec": section["models"][wildcards.model], "timing": config["timing"],
                             "stability": config["stability"], "seed": config["inputs"]["seed"], "batch": shape[1],
                             "prompt_len": shape[2], "new_tokens": shape[3], "cells": cells})


rule bench_generate:
    input:
        peaks=rules.device_peaks.output.peaks,
    output:
        bundle=f"results/shapes/{GEN_SHAPE_PATH}.json",
    params:
        request=generation_request,
    threads: BENCH_THREADS
    resources:
        **TIMING,
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        f"logs/shapes/{GEN_SHAPE_PATH}.log",
    benchmark:
        f"benchmarks/shapes/{GEN_SHAPE_PATH}.tsv"
    shell:
        "python3 -m scripts.bench_generate --request {params.request:q} --peaks {input.peaks:q}"
        " --threads {threads} --log {log:q} --out {output.bundle:q} > {log:q} 2>&1"


rule generation_record:
    input:
        bundle=rules.bench_generate.output.bundle,
    output:
        record=f"results/cells/{GEN_CELL_PATH}.json",
    localrule: True
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        f"logs/cells/{GEN_CELL_PATH}.log",
    shell:
        "python3 -m scripts.split_shape --bundle {input.bundle:q} --backend {wildcards.backend:q}"
        " --precision {wildcards.precision:q} --out {output.record:q} > {log:q} 2>&1"


rule aggregate_generation:
    input:
        records=generation_record_paths(),
    output:
        generation=report("results/tables/generation.csv", category="Tables", labels={"table": "generation"}),
        best=report("results/tables/generation_best.csv", category="Tables", labels={"table": "generation: best per shape"}),
    params:
        baseline=matrix.canonical(matrix.generation_baseline(config)),
        margin=config["aggregate"]["practical_margin"],
        out_dir=subpath(output.generation, parent=True),
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        "logs/aggregate_generation.log",
    shell:
        "python3 -m scripts.aggregate_generation --baseline {params.baseline:q} --practical-margin {params.margin}"
        " --out-dir {params.out_dir:q} --records {input.records:q} > {log:q} 2>&1"
