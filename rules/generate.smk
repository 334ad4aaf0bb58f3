# The generation workload (infbench/workloads/generate): one timing job per (model, batch, prompt_len) runs every
# generation backend and precision of it in interleaved rounds, like the forward shape jobs (rules/bench.smk);
# its bundle is split into one record per cell, and the records into the generation tables.

rule bench_generate:
    input:
        peaks=rules.device_peaks.output.peaks,
        artifacts=generation_artifacts,
    output:
        bundle=f"results/shapes/{GEN_SHAPE_PATH}.json",
    params:
        request=generation_request,
    threads: BENCH_THREADS
    resources:
        **TIMING,
        **GEN_SESSION_MEMORY,
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
        mix="--mix-environments" if config["aggregate"]["mix_environments"] else "",
        out_dir=subpath(output.generation, parent=True),
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        "logs/aggregate_generation.log",
    shell:
        "python3 -m scripts.aggregate_generation --baseline {params.baseline:q} --practical-margin {params.margin}"
        " {params.mix}"
        " --out-dir {params.out_dir:q} --records {input.records:q} > {log:q} 2>&1"
