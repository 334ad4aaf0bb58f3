rule build_model:
    output:
        manifest="results/models/{model}/manifest.json",
    params:
        spec=model_spec,
        out_dir="results/models/{model}",
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    shell:
        "python3 {SCRIPTS}/build_model.py --spec {params.spec:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule reference:
    input:
        manifest=rules.build_model.output.manifest,
    output:
        npz="results/reference/{model}/b{batch}_s{seq_len}.npz",
    params:
        model_dir="results/models/{model}",
        seed=config["inputs"]["seed"],
    log:
        "logs/reference/{model}/b{batch}_s{seq_len}.log",
    benchmark:
        "benchmarks/reference/{model}/b{batch}_s{seq_len}.tsv"
    shell:
        "python3 {SCRIPTS}/make_reference.py --model-dir {params.model_dir:q} --batch {wildcards.batch}"
        " --seq-len {wildcards.seq_len} --seed {params.seed} --out {output.npz:q} > {log:q} 2>&1"
