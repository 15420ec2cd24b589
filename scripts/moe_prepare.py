"""moe-prepare: text (JSONL, Parquet or plain text) -> a moebatch token file (docs/formats.md).

Tokenizes with a Hugging Face `tokenizer.json` (the `tokenizers` library), optionally adds BOS,
splits documents longer than --max-len into sliding windows (each token scored once, with as much
preceding context as the window allows) and writes a ragged token file with the per-row
`score_from`, the row -> document map and each document's id. Streams: documents are read,
tokenized and appended a chunk at a time, so memory stays bounded by the chunk, not the corpus.
The file is written under a temporary name and renamed when complete: a failed or interrupted run
leaves nothing that a later run would accept. Runs under the virtual environment that
scripts/setup.sh makes (build/bin/moe-prepare starts it). The readers are in text_sources.py.
"""
import argparse
import hashlib
import json
import os
import signal
import sys
import time

import h5py
import numpy as np

from text_sources import Cursor, InputError, read_jsonl, read_parquet, read_text, where

FORMATS = ("jsonl", "parquet", "text")
CHUNK_BYTES = 8 << 20  # text handed to the tokenizer at once (bounds memory, keeps its threads busy)
H5_CHUNK = 1 << 16  # elements per HDF5 chunk of the growing datasets


# --- tokenizing and windows ---


def windows(length, max_len, stride):
    """(begin, end, score_from) of each window of a document of `length` tokens.

    Each window ends `stride` tokens after the previous one and reaches back max_len tokens (or to
    the start): it scores the tokens past the previous window's end, so every token from position 1
    on is scored exactly once, with at least max_len - stride tokens of context once past the first
    window (Hugging Face's sliding-window perplexity; the last window also reaches back max_len).
    """
    if max_len is None or length <= max_len:
        return [(0, length, 0)]
    out = [(0, max_len, 0)]
    end = max_len
    while end < length:
        new_end = min(end + stride, length)
        begin = new_end - max_len
        out.append((begin, new_end, end - begin))
        end = new_end
    return out


def bos_id(tokenizer, tokenizer_path, bos_token):
    """The BOS id: --bos-token, else the token the tokenizer's own template puts first, else the
    bos_token of tokenizer_config.json beside tokenizer.json."""
    if bos_token is None:
        with open(tokenizer_path, encoding="utf-8") as f:
            post = (json.load(f).get("post_processor") or {})
        first = (post.get("single") or [{}])[0] if post.get("type") == "TemplateProcessing" else {}
        bos_token = (first.get("SpecialToken") or {}).get("id")
    if bos_token is None:
        config = os.path.join(os.path.dirname(os.path.abspath(tokenizer_path)), "tokenizer_config.json")
        if os.path.exists(config):
            with open(config, encoding="utf-8") as f:
                token = json.load(f).get("bos_token")
            bos_token = token.get("content") if isinstance(token, dict) else token
    if bos_token is None:
        raise InputError(f"{tokenizer_path}: --bos: the tokenizer names no BOS token; give it with --bos-token")
    token_id = tokenizer.token_to_id(bos_token)
    if token_id is None:
        raise InputError(f"{tokenizer_path}: --bos: '{bos_token}' is not in the vocabulary")
    return token_id


class TokenFile:
    """The growing ragged token file; datasets are extended chunk by chunk."""

    def __init__(self, path, id_kind):
        self.f = h5py.File(path, "w")
        grow = dict(maxshape=(None,), chunks=(H5_CHUNK,))
        self.tokens = self.f.create_dataset("tokens", (0,), dtype="i4", **grow)
        self.offsets = self.f.create_dataset("offsets", (1,), dtype="i8", data=[0], **grow)
        self.score_from = self.f.create_dataset("score_from", (0,), dtype="i4", **grow)
        self.row_doc = self.f.create_dataset("row_doc", (0,), dtype="i8", **grow)
        self.doc_length = self.f.create_dataset("doc_length", (0,), dtype="i8", **grow)
        id_type = h5py.string_dtype() if id_kind == "str" else "i8"
        self.doc_id = self.f.create_dataset("doc_id", (0,), dtype=id_type, **grow)
        self.num_tokens = 0

    @staticmethod
    def append(dataset, values):
        n = dataset.shape[0]
        dataset.resize((n + len(values),))
        dataset[n:] = values

    def add(self, first_doc, docs, ids, max_len, stride):
        tokens, ends, froms, row_doc = [], [], [], []
        for d, seq in enumerate(docs):
            for begin, end, score_from in windows(len(seq), max_len, stride):
                tokens.append(seq[begin:end])
                self.num_tokens += end - begin
                ends.append(self.num_tokens)
                froms.append(score_from)
                row_doc.append(first_doc + d)
        self.append(self.tokens, np.concatenate(tokens).astype(np.int32))
        self.append(self.offsets, np.asarray(ends, dtype=np.int64))
        self.append(self.score_from, np.asarray(froms, dtype=np.int32))
        self.append(self.row_doc, np.asarray(row_doc, dtype=np.int64))
        self.append(self.doc_length, np.asarray([len(s) for s in docs], dtype=np.int64))
        self.append(self.doc_id, ids)


class Progress:
    """A progress line every few seconds on stderr (rewritten in place on a terminal)."""

    def __init__(self, total_bytes, every=2.0):
        self.total, self.every, self.start = total_bytes, every, time.time()
        self.last, self.shown = self.start, False
        self.tty = sys.stderr.isatty()

    def show(self, done_bytes, docs, tokens, final=False):
        now = time.time()
        if now - self.last < self.every and not (final and self.shown):
            return  # the final line only completes earlier ones; short runs print just the summary
        self.shown = True
        self.last = now
        rate = done_bytes / max(now - self.start, 1e-9)
        eta = (self.total - done_bytes) / rate if rate > 0 else 0.0
        line = (
            f"moe-prepare: {done_bytes / 1e6:.1f}/{self.total / 1e6:.1f} MB ({100 * done_bytes / max(self.total, 1):.0f}%)"
            f"  {docs} docs  {tokens} tokens  {rate / 1e6:.1f} MB/s  ETA {eta:.0f}s"
        )
        end = "\n" if final or not self.tty else "\r"
        print(line, end=end, file=sys.stderr, flush=True)


def check_id(value, kind, path, record, line, field):
    ok = isinstance(value, str) if kind == "str" else isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        expected = "a string" if kind == "str" else "an integer"
        raise InputError(f"{where(path, record, field, line)}: {value!r} is not {expected} like the first record's id")
    return value


def prepare(args):
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(args.tokenizer)
    except Exception as e:  # the library's own message says what is wrong with the file
        raise InputError(f"{args.tokenizer}: cannot load the tokenizer: {str(e).splitlines()[0]}") from None
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    max_len = args.max_len
    if args.model:
        with h5py.File(args.model, "r") as m:
            if "vocab_size" not in m.attrs or "max_positions" not in m.attrs:
                raise InputError(f"{args.model}: no vocab_size/max_positions attributes: not a moebatch checkpoint")
            model_vocab, max_positions = int(m.attrs["vocab_size"]), int(m.attrs["max_positions"])
        if vocab > model_vocab:
            raise InputError(
                f"{args.tokenizer}: the tokenizer's vocabulary has {vocab} tokens, more than {args.model}'s "
                f"vocab_size {model_vocab}"
            )
        max_len = min(max_len or max_positions, max_positions)
    if args.stride is not None and max_len is None:
        raise InputError("--stride needs --max-len (or --model, whose max_positions is the default)")
    stride = args.stride if args.stride is not None else (max_len // 2 if max_len else None)
    if max_len is not None and not (max_len >= 2 and stride is not None and 1 <= stride < max_len):
        raise InputError(f"--max-len {max_len} --stride {stride}: need max-len >= 2 and 1 <= stride < max-len")
    bos = bos_id(tokenizer, args.tokenizer, args.bos_token) if args.bos else None
    # The fast variant skips the character offsets, which are not needed here (same ids).
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    fmt = args.format or {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}.get(
        os.path.splitext(args.input)[1].lower(), "text"
    )
    sha, cursor = hashlib.sha256(), Cursor()
    if fmt == "jsonl":
        records = read_jsonl(args.input, args.field, args.id_field, sha, cursor)
    elif fmt == "parquet":
        records = read_parquet(args.input, args.field, args.id_field, sha, cursor, args.chunk_docs)
    else:
        if args.id_field:
            raise InputError(f"{args.input}: --id-field: plain text has no fields (one document per line)")
        records = read_text(args.input, sha, cursor)
    field = args.field if fmt != "text" else None

    if os.path.exists(args.out) and os.path.samefile(args.out, args.input):
        raise InputError(f"{args.out}: is the input; choose another --out")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    partial = os.path.join(out_dir, f".{os.path.basename(args.out)}.partial-{os.getpid()}")
    progress = Progress(os.path.getsize(args.input))
    out = None
    try:
        num_docs = 0
        batch, texts, text_bytes, id_kind = [], [], 0, None

        def flush():
            nonlocal num_docs, batch, texts, text_bytes
            encodings = encode(texts, add_special_tokens=False)
            docs, ids = [], []
            for (record, line, doc_id), enc in zip(batch, encodings):
                if not enc.ids:
                    raise InputError(f"{where(args.input, record, field, line)}: empty document (no tokens)")
                docs.append(np.asarray(([bos] if bos is not None else []) + enc.ids, dtype=np.int32))
                ids.append(record if doc_id is None else doc_id)
            out.add(num_docs, docs, ids, max_len, stride)
            num_docs += len(docs)
            batch, texts, text_bytes = [], [], 0

        for record, line, doc_id, raw in records:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{where(args.input, record, field, line)}: not valid UTF-8 at byte {e.start}") from None
            if not text.strip():
                raise InputError(f"{where(args.input, record, field, line)}: empty document")
            if out is None:
                id_kind = "str" if isinstance(doc_id, str) else "int"
                out = TokenFile(partial, id_kind)
            if doc_id is not None:
                check_id(doc_id, id_kind, args.input, record, line, args.id_field)
            batch.append((record, line, doc_id))
            texts.append(text)
            text_bytes += len(raw)
            if text_bytes >= CHUNK_BYTES or len(texts) >= args.chunk_docs:
                flush()
                progress.show(cursor.done, num_docs, out.num_tokens)
        if out is None:
            raise InputError(f"{args.input}: no documents")
        if texts:
            flush()
        ids_path = os.path.abspath(args.tokenizer)
        with open(ids_path, "rb") as f:
            tokenizer_sha = hashlib.sha256(f.read()).hexdigest()
        out.f.attrs.update(
            {
                "format": "moebatch-tokens",
                "source_file": os.path.abspath(args.input),
                "source_sha256": sha.hexdigest(),
                "source_format": fmt,
                "text_field": field or "",
                "id_field": args.id_field or "",
                "tokenizer_sha256": tokenizer_sha,
                "tokenizer_vocab_size": np.int64(vocab),
                "bos_id": np.int64(-1 if bos is None else bos),
                "max_len": np.int64(max_len or 0),
                "stride": np.int64(stride or 0),
                "num_docs": np.int64(num_docs),
            }
        )
        rows, tokens = out.row_doc.shape[0], out.num_tokens
        out.f.close()
        os.replace(partial, args.out)
        progress.show(os.path.getsize(args.input), num_docs, tokens, final=True)
        print(f"moe-prepare: {num_docs} documents, {rows} rows, {tokens} tokens -> {args.out}")
    finally:
        if out is not None and os.path.exists(partial):
            out.f.close()
            os.remove(partial)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="moe-prepare",
        description="Tokenize JSONL, Parquet or plain text (one document per line) into a moebatch token file.",
    )
    p.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer.json")
    p.add_argument("--input", required=True, help="FILE.jsonl, FILE.parquet, or plain text")
    p.add_argument("--format", choices=FORMATS, help="default: from the file name (.jsonl/.json, .parquet, else text)")
    p.add_argument("--field", default="text", help="the text field or column (default: text)")
    p.add_argument("--id-field", help="the field holding each document's id (default: the record's index)")
    p.add_argument("--bos", action="store_true", help="start every document with the BOS token")
    p.add_argument("--bos-token", help="the BOS token's text (default: the tokenizer's)")
    p.add_argument("--model", help="checkpoint: check the vocabulary fits and cap --max-len at max_positions")
    p.add_argument("--max-len", type=int, help="split documents longer than this into windows")
    p.add_argument("--stride", type=int, help="new tokens scored per window after the first (default: max-len / 2)")
    p.add_argument("--chunk-docs", type=int, default=4096, help="documents tokenized at once (default: 4096)")
    p.add_argument("--out", required=True, help="token file to write (HDF5)")
    args = p.parse_args(argv)
    # SIGTERM unwinds like an error, so the temporary file is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        prepare(args)
    except InputError as e:
        print(f"moe-prepare: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"moe-prepare: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moe-prepare: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as e:  # e.g. a corrupt Parquet file: still one line, not a traceback
        print(f"moe-prepare: {args.input}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
