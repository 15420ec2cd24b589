#!/usr/bin/env bash
# The text path on a small real corpus: the paragraphs of this repository's docs/*.md as a JSONL file
# (id = file:line), a byte-level BPE tokenizer of 500 tokens trained on them, and a random
# mixtral-tiny model (vocabulary 512, max_positions 256: longer paragraphs are scored in windows).
# Then one command, scripts/score_text.sh, takes the JSONL to per-document perplexities and a PNG.
# Everything lands in build/example_text/ (BUILD picks another build folder).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=$root/${BUILD:-build}
work=$build/example_text
mkdir -p "$work"
"$build/bin/moe-synth" model "$root/inputs/models/mixtral-tiny.yaml" "$work/model.h5" --seed 1 >/dev/null
"$root/.venv/bin/python" - "$root/docs" "$work" <<'PY'
import glob, json, os, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
docs, work = sys.argv[1], sys.argv[2]
records = []
for path in sorted(glob.glob(os.path.join(docs, "*.md"))):
    lines = open(path, encoding="utf-8").read().split("\n")
    start = 0
    for i, line in enumerate(lines + [""]):
        if not line.strip():
            text = " ".join(l.strip() for l in lines[start:i]).strip()
            if len(text) > 40 and not text.startswith(("|", "```")):
                records.append({"id": f"{os.path.basename(path)}:{start + 1}", "text": text})
            start = i + 1
with open(os.path.join(work, "docs.jsonl"), "w", encoding="utf-8") as f:
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([r["text"] for r in records], trainers.BpeTrainer(
    vocab_size=500, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(os.path.join(work, "tokenizer.json"))  # beside model.h5, where moe-convert puts it
print(f"example_text: {len(records)} paragraphs -> {work}/docs.jsonl")
PY
bash "$root/scripts/score_text.sh" "$work/model.h5" "$work/docs.jsonl" "$work/out" --id-field id --bos --bos-token "<s>"
