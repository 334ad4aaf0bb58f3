#!/usr/bin/env bash
# Does CPU-side work (ONNX export, fusion, CPU engine builds, compilation: jobs that hold no GPU lease and so
# may run beside a timing job) disturb GPU timing? Times config/gpu-overlap.yaml's cells alone, then again
# beside a CPU load of nproc-2 busy processes, and compares the two runs (scripts/compare_runs.py: a
# change counts when its bootstrap CI excludes 1 and it is >= 5%). Run on the GPU host after staging:
#   PACK=.offline/pack2 bash tools/overlap-check.sh        → $OUT/overlap.html, overlap.csv
set -euo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
config=config/gpu-overlap.yaml
OUT=$out/alone BUDGET_S=${BUDGET_S:-200} bash tools/offline-gpu-run.sh run "$config" || true
export PYTHONPATH=/root/site${PYTHONPATH:+:$PYTHONPATH}
rm -rf /tmp/alone-tables && cp -r results/tables /tmp/alone-tables
busy=$(( $(nproc) - 2 )); pids=()
for _ in $(seq "$busy"); do python3 -c "while True: pass" & pids+=($!); done
start=$(date +%s)
timeout --signal=INT 150 python3 -m snakemake --configfile "$config" --cores "$(nproc)" --resources timing_slots=1 gpu=1 \
  --forcerun bench > "$out/loaded.log" 2>&1 || true
kill "${pids[@]}" 2>/dev/null || true
echo "loaded run: $(( $(date +%s) - start )) s beside $busy busy processes" | tee -a "$out/loaded.log"
python3 -m scripts.compare_runs /tmp/alone-tables results/tables --label-a alone --label-b "beside $busy busy CPU processes" \
  --out "$out/overlap.html" --csv "$out/overlap.csv"
python3 -c "import pandas as p; t = p.read_csv('$out/overlap.csv'); print(t[['backend','precision','batch','ratio_b_over_a','ratio_lo','ratio_hi','verdict']].to_string())"
