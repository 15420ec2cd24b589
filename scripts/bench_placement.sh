#!/usr/bin/env bash
# Placement benchmark (issue 11, README "Expert placement"): moe-score on 4 ranks with a skewed
# moe-synth routing workload, under the contiguous, greedy and replicate placements side by side.
#
#   scripts/bench_placement.sh [BENCH_DIR]        (default build/bench_placement)
#
# Builds moe-score, moe-synth and moe-place (MOE_PRESET=cpu: the CPU-only preset, build-cpu/), then
#  1. makes a Mixtral-like model (4 MoE layers of 16 experts, top-2, d 256, expert FFN 1024) with
#     Zipf(1) expert popularity (moe-synth --zipf 1, docs/workloads.md) and two token sets of the
#     same workload: a history and a held-out benchmark set;
#  2. scores the history with moe.trace: true and plans each policy from that trace (moe-place:
#     its evaluation tables -> BENCH_DIR/place_<policy>.txt);
#  3. scores the benchmark set on 4 ranks under each placement, REPS rounds in turn (default 3),
#     and prints per policy the median tokens/s, the slowest rank's moe.experts seconds and the
#     realized rows max/mean (scripts/placement_bench.py), and a PNG of the realized rows per rank
#     -> BENCH_DIR/placement_bench.png.
# With 4 ranks on 2 cores the ranks share cores (OMP_NUM_THREADS=1), and a rank waiting in the
# all-to-all yields its core (mpi_yield_when_idle) instead of spinning on it, so the ranks with
# fewer rows do not slow the busiest one down. Timings on a shared machine are noisy, hence rounds
# in turn and medians. About three minutes here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
bench=${1:-build/bench_placement}
reps=${REPS:-3}

source scripts/build_preset.sh moe-score moe-synth moe-place
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1
mkdir -p "$bench"
bench=$(cd "$bench" && pwd)
cd "$bench"

world=4
shape=(--set num_experts=16 --set num_layers=4 --set hidden_size=256 --set head_dim=64 --set expert_ffn=1024)
"$bin/moe-synth" model "$root/inputs/models/mixtral-tiny.yaml" model.h5 "${shape[@]}" --zipf 1 --seed 11 >/dev/null
"$bin/moe-synth" tokens history.h5 --vocab 512 --num-seqs 128 --min-len 96 --max-len 128 --seed 12 >/dev/null
"$bin/moe-synth" tokens tokens.h5 --vocab 512 --num-seqs 128 --min-len 96 --max-len 128 --seed 13 >/dev/null

run_file() {  # INPUT OUTPUT REPORT EXTRA_YAML
  cat <<YAML
model: model.h5
input: $1
output: $2
report: $3
batch_size: 8
progress_seconds: 0
$4
YAML
}
run_file history.h5 history_scores.h5 history_report.json $'moe:\n  trace: true' > history.yaml
mpirun -np $world "$bin/moe-score" history.yaml >/dev/null

policies=(contiguous greedy replicate)
declare -A args=([contiguous]="" [greedy]="" [replicate]="--replicas 1")
for p in "${policies[@]}"; do
  # shellcheck disable=SC2086
  "$bin/moe-place" --model model.h5 --trace history_scores.h5 --world $world --policy "$p" ${args[$p]} \
    --out "placement_$p.json" > "place_$p.txt"
done
for p in greedy replicate; do
  echo "# moe-place --policy $p ${args[$p]} (built on the history's first half, tested on its second):"
  grep -v '^#' "place_$p.txt"
done

reports=()
for ((i = 0; i < reps; ++i)); do
  for p in "${policies[@]}"; do
    run_file tokens.h5 "scores_$p.h5" "report_${p}_$i.json" $'moe:\n  placement: '"placement_$p.json" > "run_$p.yaml"
    mpirun -np $world "$bin/moe-score" "run_$p.yaml" >/dev/null
    reports+=("$p=report_${p}_$i.json")
  done
done
command="OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 mpirun -np $world moe-score (batch_size 8, 128 sequences of 96-128 tokens; $reps rounds)"
/usr/bin/python3 "$root/scripts/placement_bench.py" --png placement_bench.png --command "$command" \
  --title "moe-score on $world ranks, Zipf(1) routing, 16 experts: realized load per rank" "${reports[@]}" |
  tee placement_bench.txt
