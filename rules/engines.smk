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


# AOTInductor packages (engine aot_inductor): compiled ahead of every timing job, in parallel processes, into
# results/compiled/{model}/{key}.pt2; a package already built under its key (model entry, options,
# precision, shape, torch version) is reused, so a new shape compiles only its own packages. The index is the
# job's output and an input of the model's shape jobs that load packages (they are re-measured when the
# model's set of packages changes; nothing is recompiled that was built before).
rule compile_aoti:
    input:
        manifest="results/models/{model}/manifest.json",
    output:
        index="results/compiled/{model}/index.json",
    params:
        packages=aoti_params,
        device=DEVICE,
    # Half the cores: inductor's own compile workers keep them busy, and the rest let the single-threaded
    # ONNX export, fusion and fp64 references run beside it (with every core, export waited 80 s for it on
    # the H100, the whole compile).
    threads: max(1, workflow.cores // 2)
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/compiled/{model}.log",
    benchmark:
        "benchmarks/compiled/{model}.tsv"
    shell:
        "python3 -m scripts.compile_aoti --manifest {input.manifest:q} --packages {params.packages:q}"
        " --device {params.device} --workers {threads} --out {output.index:q} > {log:q} 2>&1"
