# One timing job per shape (model, batch, seq_len): every backend and precision of the shape, prepared once
# and timed in interleaved rounds (infbench/cell.py), so speedups pair measurements seconds apart. Timing jobs
# never overlap on a device (see TIMING in common.smk). Its bundle of records is split into one record per
# cell (rule cell_record), which is what every downstream rule reads.


rule bench:
    input:
        unpack(shape_inputs),
    output:
        bundle=f"results/shapes/{SHAPE_PATH}.json",
    params:
        shape=shape_params,
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
        f"logs/shapes/{SHAPE_PATH}.log",
    benchmark:
        f"benchmarks/shapes/{SHAPE_PATH}.tsv"
    shell:
        "python3 -m scripts.bench_shape --shape {params.shape:q} --manifest {input.manifest:q}"
        " --reference {input.reference:q} --threads {threads} --timeout {resources.cell_timeout_s}"
        " --log {log:q} --out {output.bundle:q} > {log:q} 2>&1"


rule cell_record:
    input:
        bundle=rules.bench.output.bundle,
    output:
        record=f"results/cells/{CELL_PATH}.json",
    localrule: True
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        f"logs/cells/{CELL_PATH}.log",
    shell:
        "python3 -m scripts.split_shape --bundle {input.bundle:q} --backend {wildcards.backend:q}"
        " --precision {wildcards.precision:q} --out {output.record:q} > {log:q} 2>&1"


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
