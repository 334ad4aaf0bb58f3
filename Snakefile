# Transformer inference benchmark: model → ONNX → fused ONNX → one timing job per cell → tables → figures
# → one self-contained HTML report. The matrix lives in config/config.yaml (schema: config/schema.yaml).


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/onnx.smk"
include: "rules/bench.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
