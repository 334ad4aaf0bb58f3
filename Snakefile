# Transformer inference benchmark: model → ONNX → fused ONNX → TensorRT engines → one timing job per cell → tables → figures
# → one self-contained HTML report. The matrix lives in config/config.yaml (schema: config/schema.yaml).


# A --configfile given on the command line replaces the default matrix instead of being merged into it
# (merging would silently keep the default's models and backends).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# Before validation (rules/common.smk): Snakemake has read the config files itself, keeping the last of a
# duplicated key, and parsed `--config` lists and mappings as strings; both are put right here.
import os
import sys

sys.path.insert(0, workflow.basedir)
from infbench import config as matrix
from infbench import records

try:
    matrix.check_config_files(workflow.configfiles)
    matrix.retype_command_line(config, dict(workflow.config_settings.config))
except matrix.ConfigError as error:
    raise WorkflowError(str(error)) from None


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/onnx.smk"
include: "rules/engines.smk"
include: "rules/bench.smk"
include: "rules/generate_ort.smk"
include: "rules/generate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
        rules.compare.output.html if config["compare"]["against"] else [],


# Jobs this Snakemake runs on its own host share it: there, the host's timing lock keeps every timed round
# apart from heavy work (infbench/devices.py). Jobs submitted to a cluster get their own allocation.
onstart:
    if workflow.local_exec:
        os.environ[devices.LOCAL_RUN] = "1"


# The cell worker (infbench/worker.py) outlives no run: stop it however the run ends. What to do next is
# printed on the screen, not only in a job's log (records.print_notices).
onsuccess:
    worker.shutdown_all()
    records.print_notices()


onerror:
    worker.shutdown_all()
    records.print_notices(log)
    # A failed run leaves no report and no tables that look current: Snakemake does not regenerate missing
    # intermediate files (a record or bundle removed as corrupt, a failed job's output) while the files
    # downstream of them exist, so the next run would otherwise say "Nothing to be done" or render the report
    # from stale tables. Without the aggregate's first table, the next run aggregates again, and with it
    # regenerates every record (and shape bundle) that is missing.
    for stale in ("report/index.html", "results/tables/cells.csv", "results/tables/generation.csv"):
        if os.path.exists(stale):
            os.remove(stale)
