#!/usr/bin/env bash
# Throughput of moe-score on one rank against this machine's floor. Makes the mixtral-small model
# (352 M parameters, 1.4 GB) and 32 x 512 tokens in build/bench/, measures the GEMM rate with
# moe-bench, scores, and prints time per phase and tokens/s against the GEMM-bound floor
# (FLOPs per token / measured sgemm GFLOP/s). Takes about 2 minutes on 2 cores.
# It keeps the environment's OPENBLAS_CORETYPE; `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
# scripts/bench_score.sh` measures with OpenBLAS's own kernel choice (moe-bench prints which).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
cmake --preset default >/dev/null
cmake --build --preset default --target moe-score moe-synth moe-bench >/dev/null
source scripts/mpi_env.sh
mkdir -p build/bench && cd build/bench
bin=$root/build/bin
[[ -f model.h5 ]] || "$bin/moe-synth" model "$root/inputs/models/mixtral-small.yaml" model.h5 --seed 1
[[ -f tokens.h5 ]] || "$bin/moe-synth" tokens tokens.h5 --vocab 32000 --num-seqs 32 --min-len 512 --max-len 512 --seed 2
"$bin/moe-bench" gemm --reps 3 | tee gemm.txt
cat > run.yaml <<YAML
model: model.h5
input: tokens.h5
output: scores.h5
report: report.json
batch_size: 8
progress_seconds: 0
YAML
"$bin/moe-score" run.yaml
/usr/bin/python3 - <<'PY'
import json, re
r = json.load(open("report.json"))
m = r["model"]
gemm = float(re.search(r"best_f32_gflops=([\d.]+)", open("gemm.txt").read()).group(1))
d, V, L = m["hidden_size"], m["vocab_size"], m["layers"]
# Architecture of mixtral-small (inputs/models/mixtral-small.yaml).
heads, kv, hd, ffn, k, E, S = 16, 4, 64, 2816, m["top_k"], 8, 512
proj = 2 * d * (heads * hd + 2 * kv * hd) + 2 * heads * hd * d
experts = k * 2 * 3 * d * ffn
attn = 4 * heads * hd * (S + 1) / 2          # QK^T and PV over the causal half, averaged
router = 2 * d * E
per_token = L * (proj + experts + attn + router) + 2 * d * V
tokens = r["input"]["tokens"]
loop = r["throughput"]["loop_seconds"]
floor = tokens * per_token / (gemm * 1e9)
print(f"\n# {tokens} tokens, {per_token/1e6:.1f} MFLOP/token, sgemm {gemm:.0f} GFLOP/s measured above")
print(f"{'phase':<16} {'seconds':>8} {'share':>6}")
for name, sec in sorted(r["phase_seconds_max_over_ranks"].items(), key=lambda x: -x[1]):
    if name in ("load", "warmup", "validate"):
        continue
    print(f"{name:<16} {sec:8.2f} {100*sec/loop:5.1f}%")
print(f"{'batch loop':<16} {loop:8.2f}")
print(f"tokens/s {tokens/loop:.0f}; GEMM-bound floor {tokens/floor:.0f} tokens/s; "
      f"achieved {100*floor/loop:.0f}% of it ({tokens*per_token/loop/1e9:.0f} GFLOP/s)")
print(f"PERFORMANCE score tokens_per_second={tokens/loop:.0f} floor_fraction={floor/loop:.2f}")
PY
