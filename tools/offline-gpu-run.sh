#!/usr/bin/env bash
# Run the pipeline on an offline GPU host (no package registry) with carried wheels.
#
#   tools/offline-gpu-run.sh stage PART          copy one carried part (.offline/pack/part-NN) to /root/stage
#   tools/offline-gpu-run.sh run CONFIG [ARGS]   install the staged wheels, run snakemake on CONFIG, and put
#                                                the report and a tarball of tables, records, logs under $OUT
# The wheels are packed here with ../shared/offline-wheels/pack.sh from .offline/requirements-offline.txt
# (snakemake and onnxruntime-gpu with the dependencies the GPU image lacks).
set -euo pipefail
pack=.offline/pack
case "${1:?stage|run}" in
  stage)
    bash "$pack/unpack.sh" stage "${2:?part}" /root/stage ;;
  run)
    config=${2:?config}; shift 2
    [ -d /root/site/snakemake ] || bash "$pack/unpack.sh" install /root/stage "$PWD/$pack/MANIFEST.sha256" /root/site > /tmp/install.log 2>&1 \
      || { tail -20 /tmp/install.log; exit 1; }
    export PYTHONPATH=/root/site${PYTHONPATH:+:$PYTHONPATH}
    out=${OUT:-/tmp/out}; mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > "$out/gpu.csv" || true
    start=$(date +%s)
    set +e
    # stop (SIGINT: Snakemake cleans up) before the device call's own limit, so the outputs still come back
    timeout --signal=INT "${BUDGET_S:-420}" python3 -m snakemake --configfile "$config" --cores "$(nproc)" \
      --keep-going "$@" > "$out/snakemake.log" 2>&1
    status=$?
    set -e
    echo "snakemake exit $status, wall $(( $(date +%s) - start )) s" | tee -a "$out/snakemake.log"
    for log in $(grep -A6 "^Error in rule" "$out/snakemake.log" | sed -n 's/^ *log: \([^ ]*\).*/\1/p' | sort -u); do
      echo "=== $log"; tail -15 "$log"
    done | tee -a "$out/snakemake.log" | tail -60
    cp report/index.html "$out/" 2>/dev/null || true
    # at most a few files come back: everything else travels in one tarball
    tar czf "$out/results.tgz" results/tables results/figures results/cells results/onnx/*/*.json results/.workers/*.log logs benchmarks \
      2>/dev/null || true
    exit $status ;;
esac
