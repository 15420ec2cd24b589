#!/usr/bin/env bash
# Text in, per-document perplexities out: moe-prepare -> moe-score (mpirun) -> moe-summarize.
#   scripts/score_text.sh MODEL.h5 INPUT OUT_DIR [moe-prepare options, e.g. --id-field id --bos]
# INPUT is JSONL, Parquet or plain text (docs/formats.md); the tokenizer is tokenizer.json beside
# the model (moe-convert copies it there) unless TOKENIZER says otherwise. Documents longer than
# the model's max_positions are split into windows (--max-len/--stride override). OUT_DIR gets
# tokens.h5, scores.h5, scores.json, docs.csv (doc_id, tokens, logprob, perplexity) and
# perplexity.png. NP ranks (default 2); BUILD picks the build folder (default build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if (($# < 3)); then
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
model=$(realpath "$1") input=$2 out=$3
shift 3
bin=$root/${BUILD:-build}/bin
tokenizer=${TOKENIZER:-$(dirname "$model")/tokenizer.json}
source "$root/scripts/mpi_env.sh"
mkdir -p "$out"

"$bin/moe-prepare" --tokenizer "$tokenizer" --model "$model" --input "$input" --out "$out/tokens.h5" "$@"
cat >"$out/run.yaml" <<YAML
model: $model
input: tokens.h5
output: scores.h5
report: scores.json
batch_size: 8
YAML
(cd "$out" && OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} mpirun -np "${NP:-2}" --bind-to none "$bin/moe-score" run.yaml)
"$bin/moe-summarize" --tokens "$out/tokens.h5" --scores "$out/scores.h5" --table "$out/docs.csv" \
  --png "$out/perplexity.png"
