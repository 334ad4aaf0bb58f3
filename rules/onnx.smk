rule export_onnx:
    input:
        manifest=rules.build_model.output.manifest,
    output:
        graph="results/onnx/{model}/exported.onnx",
        info="results/onnx/{model}/exported.json",
    params:
        opset=config["onnx"]["opset"],
        parity_rtol=config["onnx"]["parity_rtol"],
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/onnx/{model}/exported.log",
    benchmark:
        "benchmarks/onnx/{model}/exported.tsv"
    shell:
        "python3 -m scripts.export_onnx --manifest {input.manifest:q} --out {output.graph:q}"
        " --opset {params.opset} --parity-rtol {params.parity_rtol} > {log:q} 2>&1"


rule optimize_onnx:
    input:
        graph=rules.export_onnx.output.graph,
        manifest=rules.build_model.output.manifest,
    output:
        graph="results/onnx/{model}/optimized.onnx",
        info="results/onnx/{model}/optimized.json",
    params:
        parity_rtol=config["onnx"]["parity_rtol"],
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/onnx/{model}/optimized.log",
    benchmark:
        "benchmarks/onnx/{model}/optimized.tsv"
    shell:
        "python3 -m scripts.optimize_onnx --exported {input.graph:q} --manifest {input.manifest:q}"
        " --out {output.graph:q} --parity-rtol {params.parity_rtol} > {log:q} 2>&1"


rule convert_precision:
    input:
        graph="results/onnx/{model}/{graph}.onnx",
    output:
        graph="results/onnx/{model}/{graph}_{typed}.onnx",
        info="results/onnx/{model}/{graph}_{typed}.json",
    wildcard_constraints:
        graph="exported|optimized",
        typed="fp16|bf16",
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/onnx/{model}/{graph}_{typed}.log",
    benchmark:
        "benchmarks/onnx/{model}/{graph}_{typed}.tsv"
    shell:
        "python3 -m scripts.convert_precision --graph {input.graph:q} --out {output.graph:q}"
        " --precision {wildcards.typed} > {log:q} 2>&1"
