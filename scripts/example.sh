#!/usr/bin/env bash
# From a bare machine: set up, build, make a small Mixtral-like model and a token dataset, score
# it on 2 MPI ranks and print a summary of the results. Everything lands in build/example/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default --target moe-score moe-synth
source scripts/mpi_env.sh

mkdir -p build/example
cd build/example
bin=$root/build/bin
"$bin/moe-synth" model "$root/inputs/models/mixtral-tiny.yaml" model.h5 --seed 1
"$bin/moe-synth" tokens tokens.h5 --vocab 512 --num-seqs 64 --min-len 8 --max-len 128 --seed 2
OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$bin/moe-score" "$root/inputs/example.yaml"

/usr/bin/python3 - <<'PY'
import json
import h5py
import numpy as np

with h5py.File("scores.h5", "r") as f:
    lp = f["logprobs"][...]
    seq = f["seq_logprob"][...]
    n = f["seq_tokens"][...]
    print(f"\nscores.h5: logprobs {lp.shape} float32, seq_logprob {seq.shape}, seq_tokens {n.shape}")
    print(f"  scored tokens: {int(n.sum())}, mean log p: {np.nanmean(lp):.4f} "
          f"(uniform over the vocabulary would be {-np.log(512):.4f})")
    print(f"  per-token perplexity: {np.exp(-seq.sum() / n.sum()):.2f}")
    print(f"  model {f.attrs['model_checksum']}, input {f.attrs['input_checksum']}")
r = json.load(open("scores.json"))
print(f"scores.json: {r['throughput']['tokens_per_second']:.0f} tokens/s on {r['layout']['world']} ranks, "
      f"peak RSS {r['memory']['peak_rss_bytes_max_over_ranks'] / 2**20:.0f} MiB, load imbalance per MoE layer "
      + ", ".join(f"{l['load_imbalance_max_over_mean']:.2f}" for l in r["moe_layers"]))
PY
echo "results: $PWD/scores.h5 (open with h5py), run report: $PWD/scores.json"
