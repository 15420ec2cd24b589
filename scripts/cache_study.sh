#!/usr/bin/env bash
# Expert-cache study: routing workloads with controlled statistics, what they realize, and the
# eviction-policy table on the topic-locality workload (docs/workloads.md, README).
#
#   scripts/cache_study.sh [STUDY_DIR]        (default build/cache_study)
#
# Builds moe-score, moe-synth and moe-bench (MOE_PRESET=cpu: the CPU-only preset, build-cpu/), then
#  1. sweeps each moe-synth routing knob (--zipf, --topic-boost, --pair-boost) on a tiny
#     Mixtral-like model, scores with moe.trace and prints the realized statistics
#     (scripts/routing_stats.py) -> STUDY_DIR/workloads.txt;
#  2. scores the topic-locality workload (8 experts per layer, 4 topics of 2 experts each, runs of
#     16 sequences per topic, batches of 4) with moe.trace, replays the trace through lifo, lru
#     and belady at 12.5-75% of the experts (moe-bench cache) -> STUDY_DIR/cache.txt, cache.csv,
#     cache.png (scripts/plot_cache.py).
# About two minutes here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
study=${1:-build/cache_study}

source scripts/build_preset.sh moe-score moe-synth moe-bench
mkdir -p "$study"
study=$(cd "$study" && pwd)
spec=$root/inputs/models/mixtral-tiny.yaml
shape=(--set num_experts=8 --set num_layers=4)
cd "$study"

score() {  # MODEL TOKENS OUT
  cat > run.yaml <<YAML
model: $1
input: $2
output: $3
batch_size: 4
progress_seconds: 0
moe:
  trace: true
  trace_topk: true
YAML
  OMP_NUM_THREADS=2 "$bin/moe-score" run.yaml >/dev/null
}

# --- 1. each knob alone, its realized statistics ---
"$bin/moe-synth" tokens uniform.h5 --vocab 512 --num-seqs 64 --min-len 32 --max-len 64 --seed 2 >/dev/null
"$bin/moe-synth" tokens topics.h5 --vocab 512 --num-seqs 64 --min-len 32 --max-len 64 --seed 2 \
  --topics 4 --topic-run 8 >/dev/null
{
  echo "# realized routing statistics per knob (scripts/routing_stats.py; 8 experts, top-2, batches of 4 sequences)"
  sweep() {  # LABEL TOKENS BUSIEST MOE-SYNTH-ARGS...
    local label=$1 tokens=$2 busiest=$3
    shift 3
    "$bin/moe-synth" model "$spec" knob.h5 "${shape[@]}" --seed 1 "$@" >/dev/null
    score knob.h5 "$tokens" knob_scores.h5
    echo "## $label"
    /usr/bin/python3 "$root/scripts/routing_stats.py" knob_scores.h5 --busiest "$busiest"
  }
  sweep "no structure" uniform.h5 2
  for z in 0.5 1 1.5; do sweep "--zipf $z" uniform.h5 2 --zipf $z; done
  for b in 1 2 4 8; do sweep "--topics 4 --topic-experts 2 --topic-boost $b (tokens: --topics 4 --topic-run 8)" \
    topics.h5 2 --topics 4 --topic-experts 2 --topic-boost $b; done
  for b in 1 2 4; do sweep "--pair-boost $b" uniform.h5 2 --pair-boost $b; done
} > workloads.txt
cat workloads.txt

# --- 2. the topic-locality workload and the eviction policies ---
"$bin/moe-synth" model "$spec" topic_model.h5 "${shape[@]}" --seed 11 --topics 4 --topic-experts 2 \
  --topic-boost 8 >/dev/null
"$bin/moe-synth" tokens topic_tokens.h5 --vocab 512 --num-seqs 512 --min-len 32 --max-len 64 --seed 12 \
  --topics 4 --topic-run 16 >/dev/null
score topic_model.h5 topic_tokens.h5 topic_scores.h5
{
  /usr/bin/python3 "$root/scripts/routing_stats.py" topic_scores.h5
  "$bin/moe-bench" cache --trace topic_scores.h5 --slots 1,2,4,6 --csv cache.csv
  "$bin/moe-bench" cache --trace topic_scores.h5 --slots 1,2 --ranks 2
} | tee cache.txt
/usr/bin/python3 "$root/scripts/plot_cache.py" cache.csv cache.png \
  --title "topic-locality workload: 8 experts/layer, 4 topics of 2, runs of 4 batches"
