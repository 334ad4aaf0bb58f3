# One timing job per cell. Timing jobs never overlap: each holds the single 'timing_slots' resource
# (limit set in profiles/default) and, on the CPU, every core.


rule bench:
    input:
        unpack(bench_inputs),
    output:
        record=f"results/cells/{CELL_PATH}.json",
    params:
        cell=cell_params,
        artifacts=artifact_flags,
    threads: BENCH_THREADS
    resources:
        timing_slots=1,
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        f"logs/cells/{CELL_PATH}.log",
    benchmark:
        f"benchmarks/cells/{CELL_PATH}.tsv"
    shell:
        "python3 -m scripts.bench_cell --cell {params.cell:q} --manifest {input.manifest:q}"
        " --reference {input.reference:q} {params.artifacts:q} --threads {threads} --log {log:q}"
        " --out {output.record:q} > {log:q} 2>&1"
