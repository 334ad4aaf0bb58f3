#!/usr/bin/env bash
# On the GPU host, from the repository root, with the offline wheels installed in /root/site: prepare one shape's
# inputs with the pipeline (everything upstream of its bench job), then run level_bisect.py with the very
# arguments Snakemake would give that job. Usage: tools/diagnostics/run_bisect.sh [BATCH] [SEQ_LEN]
set -uo pipefail
b=${1:-1}; s=${2:-128}
export PYTHONPATH=/root/site${PYTHONPATH:+:$PYTHONPATH}
target=results/shapes/bert-base/b${b}_s${s}.json
sm=(python3 -m snakemake --configfile config/gpu.yaml --config "batch_sizes=[$b]" "seq_lens=[$s]" --cores "$(nproc)"
    --resources timing_slots=1 gpu=1)
"${sm[@]}" --omit-from bench "$target" > "$OUT/upstream.log" 2>&1; echo "upstream exit $?"
cmd=$("${sm[@]}" -n -p --forcerun bench "$target" 2>/dev/null | grep -m1 "scripts.bench_shape")
cmd=${cmd#*Shell command: }
cmd=${cmd/python3 -m scripts.bench_shape/python3 tools\/diagnostics\/level_bisect.py}
cmd=${cmd% > *}
echo "$cmd" | cut -c1-300
eval "$cmd"
