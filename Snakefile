# Transformer inference benchmark: model → ONNX → fused ONNX → TensorRT engines → one timing job per cell → tables → figures
# → one self-contained HTML report. The matrix lives in config/config.yaml (schema: config/schema.yaml).


# A --configfile given on the command line replaces the default matrix instead of being merged into it
# (merging would silently keep the default's models and backends).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/onnx.smk"
include: "rules/engines.smk"
include: "rules/bench.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
        rules.compare.output.html if config["compare"]["against"] else [],


# The cell worker (infbench/worker.py) outlives no run: stop it however the run ends.
onsuccess:
    worker.shutdown_all()


onerror:
    worker.shutdown_all()
