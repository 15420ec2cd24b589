#!/usr/bin/env bash
# Expert buffering: what a bounded expert cache saves in memory and costs in speed, and a model
# larger than its memory limit scoring (issue 10).
#
#   scripts/bench_cache_memory.sh [DIR]        (default build/cache_memory)
#
# Makes a Mixtral-like model whose experts are 94% of its weights (8 layers, d 1024, 8 experts of
# FFN 2816, top-2, vocabulary 8000; 2.4 GB in f32) with the topic-locality routing workload
# (docs/workloads.md: 4 topics of 2 experts per layer; runs of 12 sequences per topic, batches of
# 4; NUM_SEQS sequences of SEQ_LEN tokens), then
#  1. scores it side by side with every expert resident and with moe.expert_cache.slots: 2 (lifo),
#     the checkpoint in the page cache (a first run reads it in): peak RSS and tokens/s from the
#     run reports, their ratios, and the logprobs compared bit for bit;
#  2. in a cgroup-v1 memory cgroup limited to half the checkpoint's size: slots 2 completes and
#     its logprobs equal the unlimited run's; all resident under the same limit fails.
# Needs root for the cgroup (/sys/fs/cgroup/memory writable); prints a PERFORMANCE line. A few
# minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
dir=${1:-build/cache_memory}
preset=${MOE_PRESET:-default}
build=build
[[ $preset == default ]] || build=build-$preset
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target moe-score moe-synth >/dev/null
source scripts/mpi_env.sh
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$root/$build/bin
cd "$dir"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

[[ -f model.h5 ]] || "$bin/moe-synth" model "$root/inputs/models/mixtral-small.yaml" model.h5 --set num_layers=8 \
  --set vocab_size=8000 --topics 4 --topic-experts 2 --topic-boost 8 --seed 1
# NUM_SEQS x SEQ_LEN tokens (default 24 x 64: minutes on a shared 2-core machine).
num_seqs=${NUM_SEQS:-24} seq_len=${SEQ_LEN:-64}
tokens=tokens_${num_seqs}x${seq_len}.h5
[[ -f $tokens ]] || "$bin/moe-synth" tokens "$tokens" --vocab 8000 --num-seqs "$num_seqs" --min-len "$seq_len" \
  --max-len "$seq_len" --topics 4 --topic-run 12 --seed 2

score() {  # TAG SLOTS [command prefix...]: scores, results TAG.h5, report TAG.json
  local tag=$1 slots=$2
  shift 2
  cat > "$tag.yaml" <<YAML
model: model.h5
input: $tokens
output: $tag.h5
report: $tag.json
batch_size: 4
progress_seconds: 0
moe:
  expert_cache:
    slots: $slots
    policy: lifo
YAML
  "$@" "$bin/moe-score" "$tag.yaml"
}

cat model.h5 > /dev/null  # into the page cache
score resident all
score cached 2

# --- memory cgroup: half the checkpoint's size ------------------------------------------------
cg=/sys/fs/cgroup/memory/moebatch_cache_$$
limit=$(( $(stat -c %s model.h5) / 2 ))
in_cgroup() { bash -c 'echo $$ > "$0/tasks" && exec "$@"' "$cg" "$@"; }
cgroup_result=skipped
if mkdir "$cg" 2>/dev/null; then
  trap 'rmdir "$cg" 2>/dev/null || true' EXIT
  echo "$limit" > "$cg/memory.limit_in_bytes"
  echo "memory cgroup $cg: limit $limit bytes (half of model.h5)"
  cached_rc=0
  score limited_cached 2 in_cgroup > limited_cached.log 2>&1 || cached_rc=$?
  resident_rc=0
  score limited_resident all in_cgroup > limited_resident.log 2>&1 || resident_rc=$?
  echo "under the limit: slots 2 exit $cached_rc, all resident exit $resident_rc (OOM kills: $(grep -E '^oom_kill ' "$cg/memory.oom_control" 2>/dev/null | cut -d' ' -f2))"
  cgroup_result="cached_exit=$cached_rc resident_exit=$resident_rc"
else
  echo "no writable memory cgroup here: the limited runs are skipped"
fi

/usr/bin/python3 - "$cgroup_result" <<'PY'
import json, os, sys
import h5py, numpy as np

def report(tag):
    return json.load(open(f"{tag}.json"))

def same(a, b):
    x, y = h5py.File(f"{a}.h5")["logprobs"][:], h5py.File(f"{b}.h5")["logprobs"][:]
    return x.tobytes() == y.tobytes()

res, cac = report("resident"), report("cached")
rss = lambda r: r["memory"]["peak_rss_bytes_max_over_ranks"]
tps = lambda r: r["throughput"]["tokens_per_second"]
print(f"{'store':<14} {'peak RSS MiB':>12} {'expert MiB':>10} {'tokens/s':>9}")
for name, r in (("all resident", res), ("slots 2 of 8", cac)):
    print(f"{name:<14} {rss(r)/2**20:12.0f} {r['memory']['expert_bytes_max_over_ranks']/2**20:10.0f} {tps(r):9.1f}")
print(f"ratio          {rss(cac)/rss(res):12.3f} {'':>10} {tps(cac)/tps(res):9.3f}")
print("layer  hits misses  miss rate  loaded MiB  stalled s")
for l in cac["moe_layers"]:
    c = l["expert_cache"]
    print(f"{l['layer']:5d} {c['hits']:5d} {c['misses']:6d} {c['miss_rate']:10.3f} {c['bytes_loaded']/2**20:11.0f} "
          f"{c['stall_seconds_max_over_ranks']:10.2f}")
print("logprobs slots 2 == all resident (bits):", same("cached", "resident"))
limited = ""
if os.path.exists("limited_cached.h5") and "cached_exit=0" in sys.argv[1]:
    eq = same("limited_cached", "resident")
    print("logprobs under the limit == unlimited (bits):", eq)
    limited = f" limited_equal={int(eq)}"
print(f"PERFORMANCE cache_memory rss_ratio={rss(cac)/rss(res):.3f} tokens_per_second_ratio={tps(cac)/tps(res):.3f} "
      f"{sys.argv[1]}{limited}")
PY
