#!/usr/bin/env bash
# Run the pipeline on an offline GPU host (no package registry) with carried wheels.
#
#   tools/offline-gpu-run.sh pack                where a registry is reachable: download the wheels pinned in
#                                                tools/offline-wheels.txt (snakemake and onnxruntime-gpu with
#                                                the dependencies the GPU image lacks) for Python 3.12 and split
#                                                them into .offline/pack/part-NN (≤ 60 MiB), MANIFEST.sha256, unpack.sh
#   tools/offline-gpu-run.sh stage PART          copy one carried part (.offline/pack/part-NN) to /root/stage
#   tools/offline-gpu-run.sh run CONFIG [ARGS]   install the staged wheels, run snakemake on CONFIG, and put
#                                                the report and a tarball of tables, records, logs under $OUT
#   tools/offline-gpu-run.sh start CONFIG [ARGS] `run` in the background, in a process session of its own and in
#                                                a copy of the checkout (/root/runs/tree), so that a run longer
#                                                than one device call goes on between calls whatever they send
#                                                (its outputs go to /root/runs/out, its log to /root/runs/run.log)
#   tools/offline-gpu-run.sh again CONFIG [ARGS] after a started run has ended: `start` once more in the same tree,
#                                                every timed shape session rerun (--forcerun bench_generate bench)
#                                                and every prepared build kept -- the rerun minutes later whose
#                                                medians scripts.compare_runs checks against the first run's
#                                                intervals (the first run's outputs move to /root/runs/first)
#   tools/offline-gpu-run.sh wait [SECONDS]      follow the started run for at most SECONDS (default 540), then
#                                                copy its outputs to $OUT; exit 0 once it has ended, 3 while it runs
# INFBENCH_GIT_COMMIT: the commit the carried tree was made from, written into every record (a copy without .git
# cannot say it). BUDGET_S: seconds before Snakemake is stopped (SIGINT) so that outputs still come back. RESUME=1: shape bundles
# and records carried in results/shapes and results/cells (run's `carry`) are marked done, not redone -- only
# for records of this very config and code: a second run on a warm machine must not take old records as current.
# pack runs offline-wheels' pack.sh (PACK_SH; default ../shared/offline-wheels/pack.sh, which other machines
# may lack) on the tracked tools/offline-wheels.txt; pins marked `# sdist` there have no wheel on PyPI and are
# built into .offline/built first. .offline/ is git-ignored.
set -euo pipefail
pack=${PACK:-.offline/pack}  # PACK: another pack directory, e.g. re-split into smaller parts
runs=/root/runs  # start / again / wait: the background run's tree, outputs, log and pid
# launch WHAT ARGS...: `run ARGS` in the background, in $runs/tree and a process session of its own
launch() {
  local what=$1; shift
  local packs; packs=$(realpath -m "$pack")
  (cd "$runs/tree" && PACK=$packs OUT=$runs/out BUDGET_S=${BUDGET_S:-3600} setsid nohup tools/offline-gpu-run.sh run "$@" \
    > "$runs/run.log" 2>&1 < /dev/null & echo $! > "$runs/pid")
  echo "$what $* (pid $(cat "$runs/pid")) in $runs/tree at $(date -u +%FT%TZ)"
}
# running: the started run's script, or its Snakemake (on the H100 the script's process was once gone while its
# Snakemake ran on)
running() { kill -0 "$(cat "$runs/pid")" 2>/dev/null || pgrep -f "python3 -m snakemake --configfile" > /dev/null; }
# pack_results OUT: tables, records, shape bundles, logs in one tarball (at most a few files come back)
pack_results() {
  tar czf "$1/results.tgz" results/tables results/figures results/shapes results/cells results/onnx/*/*.json \
    results/device results/generation/*/*/*/manifest.json results/.workers/*.log logs benchmarks 2>/dev/null || true
}
case "${1:?pack|stage|start|again|wait|run}" in
  pack)
    pack_sh=${PACK_SH:-../shared/offline-wheels/pack.sh}
    [ -f "$pack_sh" ] || { echo "no $pack_sh: set PACK_SH to offline-wheels' pack.sh" >&2; exit 2; }
    built=$PWD/.offline/built; mkdir -p "$built"
    for pin in $(sed -n 's/^\([^ #]*\) *# sdist.*/\1/p' tools/offline-wheels.txt); do
      python3 -m pip wheel --quiet --no-deps -w "$built" "$pin"
    done
    PIP_FIND_LINKS="$built${PIP_FIND_LINKS:+ $PIP_FIND_LINKS}" bash "$pack_sh" "$pack" tools/offline-wheels.txt 3.12 ;;
  stage)
    bash "$pack/unpack.sh" stage "${2:?part}" /root/stage ;;
  start)
    shift
    rm -rf "$runs/out" "$runs/tree"; mkdir -p "$runs/out" "$runs/tree"
    # the run works in its own copy of this checkout (less the wheel packs): a later device call re-sends the
    # checkout and replaces every carried path there, which would delete a running pipeline's results
    tar -c --exclude=./.offline . | tar -x -C "$runs/tree"
    launch started "$@" ;;
  again)
    shift
    ! running || { echo "the started run is still running" >&2; exit 2; }
    rm -rf "$runs/first"; mv "$runs/out" "$runs/first"; mkdir -p "$runs/out"
    launch "started again" "$@" --forcerun bench_generate bench ;;
  wait)
    deadline=$(( $(date +%s) + ${2:-540} ))
    cd "$runs/tree"
    while running && [ "$(date +%s)" -lt "$deadline" ]; do sleep 5; done
    out=${OUT:-/tmp/out}; mkdir -p "$out"
    if running; then
      echo "still running at $(date -u +%FT%TZ): $(find results/shapes -name '*.json' 2>/dev/null | wc -l) shape sessions done"
      tail -5 "$runs/out/snakemake.log"; cp "$runs/out/snakemake.log" "$runs/out/smi.csv" "$out/" 2>/dev/null; exit 3
    fi
    [ -f "$runs/out/results.tgz" ] || pack_results "$runs/out"  # the script did not live to pack them
    cat "$runs/run.log"; cp -r "$runs/out/." "$out/" ;;
  run)
    config=${2:?config}; shift 2
    [ -d /root/site/snakemake ] || bash "$pack/unpack.sh" install /root/stage "$(realpath -m "$pack/MANIFEST.sha256")" /root/site > /tmp/install.log 2>&1 \
      || { tail -20 /tmp/install.log; exit 1; }
    export PYTHONPATH=/root/site${PYTHONPATH:+:$PYTHONPATH}
    out=${OUT:-/tmp/out}; mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > "$out/gpu.csv" || true
    # the device's clock, power and memory every second of the run (what throttled a round, what the sessions held)
    nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,memory.used --format=csv -lms 1000 > "$out/smi.csv" 2>/dev/null &
    smi=$!
    start=$(date +%s)
    budget=${BUDGET_S:-420}
    # gpu_mem_gb, build_disk_gb: the GPUs' memory and the free disk in GB, what generation jobs may hold at once
    mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | awk '{s+=$1} END {print int(s*1.048576/1000)}')
    disk=$(df -Pk . | awk 'NR==2 {print int($4*1.024/1e6)}')
    sm=(python3 -m snakemake --configfile "$config" --cores "$(nproc)" --keep-going
        --resources timing_slots=1 gpu="$(nvidia-smi -L 2>/dev/null | wc -l)" gpu_mem_gb="$mem" build_disk_gb="$disk")  # an array: timeout runs programs, not functions
    left() { echo $(( budget - ($(date +%s) - start) )); }
    set +e
    carried=$( { [ "${RESUME:-0}" = 1 ] && find results/shapes results/cells -name '*.json'; } 2>/dev/null || true)
    if [ -n "$carried" ]; then
      # records carried from an earlier device call (`carry: [results/shapes, results/cells]`): rebuild what they were
      # measured against (same config and seed give the same model, graphs and inputs), then mark them done
      echo "resuming with $(echo "$carried" | wc -l) carried records" | tee -a "$out/snakemake.log"
      timeout --signal=INT "$(left)" "${sm[@]}" --until reference optimize_onnx convert_precision device_peaks >> "$out/snakemake.log" 2>&1
      "${sm[@]}" --touch $carried >> "$out/snakemake.log" 2>&1
    fi
    # stop (SIGINT: Snakemake cleans up) before the device call's own limit, so the outputs still come back
    timeout --signal=INT "$(left)" "${sm[@]}" "$@" >> "$out/snakemake.log" 2>&1
    status=$?
    set -e
    echo "snakemake exit $status, wall $(( $(date +%s) - start )) s" | tee -a "$out/snakemake.log"
    kill "$smi" 2>/dev/null || true
    python3 -m scripts.timing_cost results/cells --since "$(date -u -d @"$start" +%Y-%m-%dT%H:%M:%S)" > "$out/timing_cost.json" 2>&1 || true
    for log in $(grep -A6 "^Error in rule" "$out/snakemake.log" | sed -n 's/^ *log: \([^ ]*\).*/\1/p' | sort -u); do
      echo "=== $log"; tail -15 "$log"
    done | tee -a "$out/snakemake.log" | tail -60
    cp report/index.html "$out/" 2>/dev/null || true
    pack_results "$out"
    exit $status ;;
esac
