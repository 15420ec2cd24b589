#!/usr/bin/env bash
# One command: a small scaling study on the local Slurm, then its plots.
#
#   scripts/scaling_study.sh [STUDY_DIR]        (default build/scaling)
#
# Sets up and builds (like scripts/example.sh), starts the local Slurm unless it runs already (and
# then stops it again at the end), makes a tiny Mixtral-like model and the token sets (strong
# scaling: the same 256 sequences for every world size; weak scaling: 64 per rank), submits
# jobs/scaling.sbatch over 1, 2, 4 and 8 ranks (tp 1 and 2, flat and hierarchical all-to-all, dynamic
# and static gating), waits for it, and writes STUDY_DIR/plots/*.png with scripts/plot_scaling.py.
# The sweep's environment variables (WORLDS, TPS, ALLTOALLS, GATINGS, RANKS_PER_NODE; see
# jobs/scaling.sbatch) pass through; MOE_PRESET=cpu builds with the CPU-only preset (build-cpu/).
# About two minutes here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
study=${1:-build/scaling}

bash scripts/setup.sh
preset=${MOE_PRESET:-default}
build=build
[[ $preset == default ]] || build=build-$preset
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target moe-score moe-synth
source scripts/mpi_env.sh

if ! bash scripts/slurm_local.sh status >/dev/null; then
  bash scripts/slurm_local.sh start
  trap 'bash scripts/slurm_local.sh stop' EXIT
  trap 'exit 130' INT TERM
fi

mkdir -p "$study"
study=$(cd "$study" && pwd)
rm -rf "$study/reports" "$study/plots" "$study"/scaling-*.log
bin=$root/$build/bin
[[ -f $study/model.h5 ]] || "$bin/moe-synth" model inputs/models/mixtral-tiny.yaml "$study/model.h5" --seed 1
tokens() { "$bin/moe-synth" tokens "$study/$1" --vocab 512 --num-seqs "$2" --min-len 32 --max-len 128 --seed 2 >/dev/null; }
tokens strong.h5 256
for w in 1 2 4 8; do tokens "weak_w$w.h5" $((64 * w)); done
cat >"$study/run.yaml" <<YAML
# The study's base run file; jobs/scaling.sbatch sets input, output, report and the swept keys.
model: model.h5
input: strong.h5
output: scores.h5
batch_size: 8
YAML

# The sweep: tp 1 and 2 unless the caller chose (jobs/scaling.sbatch's other defaults apply).
export TPS=${TPS:-1 2}
# Waiting ranks yield their core: the local node advertises more CPUs than it has.
echo "scaling_study: submitting jobs/scaling.sbatch (8 tasks) for $study"
sbatch --wait --ntasks=8 --output="$study/scaling-%j.log" \
  --export=ALL,MOE_SCORE="$bin/moe-score",OMPI_MCA_mpi_yield_when_idle=1 jobs/scaling.sbatch "$study"
tail -n 1 "$study"/scaling-*.log

/usr/bin/python3 scripts/plot_scaling.py "$study/reports" "$study/plots"
