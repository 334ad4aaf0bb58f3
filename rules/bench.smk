# One timing job per cell. Timing jobs never overlap on a device (see TIMING in common.smk).


rule bench:
    input:
        unpack(bench_inputs),
    output:
        record=f"results/cells/{CELL_PATH}.json",
    params:
        cell=cell_params,
        artifacts=artifact_flags,
    threads: BENCH_THREADS
    # the timeout is a resource, not a param: changing it must not rerun measured cells
    resources:
        **TIMING,
        cell_timeout_s=int(config["cell_timeout_s"]),
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
        " --reference {input.reference:q} {params.artifacts:q} --threads {threads}"
        " --timeout {resources.cell_timeout_s} --log {log:q}"
        " --out {output.record:q} > {log:q} 2>&1"


# The device's own peak rates (matmul per precision, copy bandwidth) for the report's roofline: measured
# once per run, with the timing policy, holding the timing slot like a cell.
rule device_peaks:
    output:
        peaks="results/device/peaks.json",
    params:
        device=DEVICE,
        timing=matrix.canonical(config["timing"]),
    threads: BENCH_THREADS
    resources:
        **TIMING,
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/device/peaks.log",
    benchmark:
        "benchmarks/device/peaks.tsv"
    shell:
        "python3 -m scripts.measure_peaks --device {params.device} --timing {params.timing:q}"
        " --threads {threads} --out {output.peaks:q} > {log:q} 2>&1"
