# ONNX Runtime generation backends (infbench/workloads/generate/ort*.py): each model directory is built once per
# (model, engine, precision) on the run's device -- the exported decoder once per attention (ort_export.ATTENTIONS)
# -- and read by every shape session of that model that times the engine. Its params are the model's spec,
# precision, device, the building libraries' versions and the attention -- not the prompt, batch or new tokens --
# so a new shape reuses it. Cells that are unsupported (family, precision on the CPU) or whose library is missing
# get no directory: their records say why. Input and params functions: rules/common.smk (generation_artifacts,
# ort_genai_params, export_decoder_params).

rule build_ort_genai:
    output:
        manifest=ort_build.artifact_path("ort_genai", "{model}", "{precision}"),
    params:
        build=ort_genai_params,
    resources:
        **ort_build_resources("ort_genai"),
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/generation/{model}/ort_genai/{precision}.log",
    benchmark:
        "benchmarks/generation/{model}/ort_genai/{precision}.tsv"
    shell:
        "python3 -m scripts.build_ort_generation --build {params.build:q} --out {output.manifest:q} > {log:q} 2>&1"


rule export_decoder:
    wildcard_constraints:
        attention="|".join(ort_export.ATTENTIONS),
    output:
        manifest=ort_build.artifact_path("ort_decoder", "{model}", "{precision}", {"attention": "{attention}"}),
    params:
        build=export_decoder_params,
    resources:
        **ort_build_resources("ort_decoder"),
    conda:
        ENV
    container:
        COMPUTE_IMAGE
    log:
        "logs/generation/{model}/ort_decoder-{attention}/{precision}.log",
    benchmark:
        "benchmarks/generation/{model}/ort_decoder-{attention}/{precision}.tsv"
    shell:
        "python3 -m scripts.build_ort_generation --build {params.build:q} --out {output.manifest:q} > {log:q} 2>&1"
