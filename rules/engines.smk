# TensorRT engines: one serialized plan per (model, backend, precision) whose optimization profile spans the
# backend's grid, or one per shape with the backend option per_shape. Cells only deserialize it.


rule build_engine:
    input:
        graph=engine_graph,
    output:
        plan="results/engines/{model}/{backend}/{precision}/{profile}.plan",
        info="results/engines/{model}/{backend}/{precision}/{profile}.json",
    params:
        build=engine_build_params,
    wildcard_constraints:
        profile="grid|b[1-9][0-9]*_s[1-9][0-9]*",
    # on a GPU the builder times kernels on the device: it must not share it with a timing job
    resources:
        **CPU_HEAVY,
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/engines/{model}/{backend}/{precision}/{profile}.log",
    benchmark:
        "benchmarks/engines/{model}/{backend}/{precision}/{profile}.tsv"
    shell:
        "python3 -m scripts.build_engine --graph {input.graph:q} --build {params.build:q}"
        " --out {output.plan:q} > {log:q} 2>&1"
