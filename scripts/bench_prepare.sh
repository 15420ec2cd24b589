#!/usr/bin/env bash
# Prepares a generated JSONL corpus of SIZE_MB megabytes (default 1024) with moe-prepare and reports
# the time, the rate and moe-prepare's peak resident memory (GNU time). The corpus is random words
# from a fixed list of syllables (documents of 200-4000 characters with string ids); the tokenizer is
# a byte-level BPE of 8192 tokens trained on its first 4 MB. Not a test: a figure for the README.
#   scripts/bench_prepare.sh [SIZE_MB] [WORK_DIR]     (BUILD=build-cpu for the CPU preset's folder)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=${1:-1024}
work=${2:-$root/${BUILD:-build}/bench_prepare}
bin=$root/${BUILD:-build}/bin
python=$root/.venv/bin/python
mkdir -p "$work"
corpus=$work/corpus_${size_mb}MB.jsonl

if [[ ! -f $corpus ]]; then
  echo "bench_prepare: writing $corpus"
  "$python" - "$corpus" "$size_mb" <<'PY'
import json, os, random, sys
path, size = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(1)
syllables = ["ka", "to", "ri", "mon", "el", "sa", "de", "qu", "ion", "th", "ver", "na", "lo", "ex", "pa", "ü", "ç"]
words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(5000)]
# A pool of documents repeated with fresh ids: writing is fast, tokenizing costs the same.
pool = [" ".join(rng.choice(words) for _ in range(rng.randint(30, 600))) for _ in range(2000)]
written, n = 0, 0
with open(path + ".partial", "w", encoding="utf-8") as f:
    while written < size:
        line = json.dumps({"id": f"doc-{n:08d}", "text": pool[n % len(pool)]}, ensure_ascii=False) + "\n"
        f.write(line)
        written += len(line.encode("utf-8"))
        n += 1
os.replace(path + ".partial", path)
print(f"bench_prepare: {n} documents, {written / 1e6:.0f} MB")
PY
fi

tokenizer=$work/tokenizer.json
if [[ ! -f $tokenizer ]]; then
  "$python" - "$corpus" "$tokenizer" <<'PY'
import itertools, json, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
corpus, out = sys.argv[1], sys.argv[2]
with open(corpus, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in itertools.islice(f, 2000)]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8192, special_tokens=["<s>"],
                                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(out)
PY
fi

echo "bench_prepare: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$work/tokens.h5"
/usr/bin/time -f "bench_prepare: wall %e s, peak RSS %M KiB" \
  "$bin/moe-prepare" --tokenizer "$tokenizer" --input "$corpus" --id-field id --bos --bos-token "<s>" --max-len 2048 --stride 1024 \
  --out "$work/tokens.h5"
echo "bench_prepare: input $(du -m "$corpus" | cut -f1) MB, output $(du -m "$work/tokens.h5" | cut -f1) MB"
