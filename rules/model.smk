rule build_model:
    output:
        manifest="results/models/{model}/manifest.json",
    params:
        spec=model_spec,
        out_dir=subpath(output.manifest, parent=True),
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    shell:
        "python3 -m scripts.build_model --spec {params.spec:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule reference:
    input:
        manifest=rules.build_model.output.manifest,
    output:
        npz="results/reference/{model}/b{batch}_s{seq_len}.npz",
        # the shape's FLOPs, counted on the fp32 pass (the roofline's work: infbench.roofline)
        work="results/reference/{model}/b{batch}_s{seq_len}.json",
    params:
        seed=config["inputs"]["seed"],
        device=DEVICE,
    resources:
        **GPU_WORK,
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/reference/{model}/b{batch}_s{seq_len}.log",
    benchmark:
        "benchmarks/reference/{model}/b{batch}_s{seq_len}.tsv"
    shell:
        "python3 -m scripts.make_reference --manifest {input.manifest:q} --batch {wildcards.batch}"
        " --seq-len {wildcards.seq_len} --seed {params.seed} --device {params.device}"
        " --log {log:q} --out {output.npz:q} > {log:q} 2>&1"
