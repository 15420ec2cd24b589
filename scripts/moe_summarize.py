"""moe-summarize: per-document scores from moe-prepare's token file and moe-score's results.

Sums each document's windows (the token file's `row_doc` maps result rows to documents; a result
row counts only its scored positions, so the sums count every token once), then prints the corpus
perplexity and a text histogram, writes a PNG of the per-document perplexity distribution and a
table `doc_id, tokens, logprob, perplexity` (Parquet for *.parquet, else CSV) that pandas reads.
"""
import argparse
import csv
import math
import os
import sys

import h5py
import numpy as np


class InputError(Exception):
    pass


def per_document(tokens_path, scores_path):
    """(doc_id array, scored tokens, summed log-probability) per document."""
    with h5py.File(tokens_path, "r") as t, h5py.File(scores_path, "r") as s:
        for name in ("row_doc", "doc_id", "offsets"):
            if name not in t:
                raise InputError(f"{tokens_path}: no dataset '{name}': not a token file of moe-prepare")
        for name in ("seq_logprob", "seq_tokens", "batch_done"):
            if name not in s:
                raise InputError(f"{scores_path}: no dataset '{name}': not moe-score results")
        if not np.all(s["batch_done"][:] == 1):
            raise InputError(f"{scores_path}: incomplete (batch_done has zeros): finish it with moe-score --resume")
        row_doc = t["row_doc"][:]
        if s["seq_logprob"].shape[0] != row_doc.shape[0] or (
            "offsets" in s and not np.array_equal(s["offsets"][:], t["offsets"][:])
        ):
            raise InputError(f"{scores_path}: its rows do not match {tokens_path}'s (scored from another token file?)")
        doc_id = t["doc_id"].asstr()[:] if h5py.check_string_dtype(t["doc_id"].dtype) else t["doc_id"][:]
        num_docs = doc_id.shape[0]
        logprob = np.bincount(row_doc, weights=s["seq_logprob"][:], minlength=num_docs)
        tokens = np.bincount(row_doc, weights=s["seq_tokens"][:], minlength=num_docs).astype(np.int64)
    return doc_id, tokens, logprob


def perplexity(logprob, tokens):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tokens > 0, np.exp(-logprob / np.maximum(tokens, 1)), np.nan)


def text_histogram(values, bins):
    """Rows `[lo, hi)  count  bar` over log-spaced bins of the finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ["(no document has a scored token)"]
    lo, hi = float(finite.min()), float(finite.max())
    edges = np.geomspace(lo, hi if hi > lo else lo * 1.0001, bins + 1)
    counts, _ = np.histogram(finite, edges)
    width = 50 / max(int(counts.max()), 1)
    return [
        f"  {edges[i]:>12.4g} - {edges[i + 1]:<12.4g} {counts[i]:>8d}  {'#' * int(round(counts[i] * width))}"
        for i in range(bins)
    ]


def write_png(path, ppl, corpus):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = ppl[np.isfinite(ppl)]
    fig, ax = plt.subplots(figsize=(7, 4))
    if finite.size:
        edges = np.geomspace(finite.min(), max(finite.max(), finite.min() * 1.0001), 41)
        ax.hist(finite, bins=edges, color="#4c72b0")
        ax.set_xscale("log")
    ax.axvline(corpus, color="#c44e52", linestyle="--", label=f"corpus perplexity {corpus:.4g}")
    ax.set_xlabel("document perplexity")
    ax.set_ylabel("documents")
    ax.set_title(f"Per-document perplexity ({finite.size} documents)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_table(path, doc_id, tokens, logprob, ppl):
    """Written under a temporary name and renamed: a reader never sees a partial table."""
    partial = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.partial-{os.getpid()}")
    try:
        if path.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"doc_id": doc_id, "tokens": tokens, "logprob": logprob, "perplexity": ppl})
            pq.write_table(table, partial)
        else:
            with open(partial, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["doc_id", "tokens", "logprob", "perplexity"])
                for row in zip(doc_id.tolist(), tokens.tolist(), logprob.tolist(), ppl.tolist()):
                    w.writerow([row[0], row[1], repr(row[2]), repr(row[3])])
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def main(argv=None):
    p = argparse.ArgumentParser(prog="moe-summarize", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", required=True, help="token file written by moe-prepare")
    p.add_argument("--scores", required=True, help="results written by moe-score for that token file")
    p.add_argument("--table", help="per-document table to write: *.parquet, else CSV")
    p.add_argument("--png", help="histogram of per-document perplexity to write (PNG)")
    p.add_argument("--bins", type=int, default=10, help="rows of the text histogram (default: 10)")
    p.add_argument("--top", type=int, default=5, help="documents listed with the highest perplexity (default: 5)")
    args = p.parse_args(argv)
    try:
        doc_id, tokens, logprob = per_document(args.tokens, args.scores)
    except (InputError, OSError) as e:
        print(f"moe-summarize: {e}", file=sys.stderr)
        return 1
    ppl = perplexity(logprob, tokens)
    total = int(tokens.sum())
    corpus = math.exp(-float(logprob.sum()) / total) if total else float("nan")
    print(f"{len(doc_id)} documents, {total} scored tokens, corpus perplexity {corpus:.4f}")
    print("per-document perplexity:")
    print("\n".join(text_histogram(ppl, args.bins)))
    order = np.argsort(-np.nan_to_num(ppl, nan=-np.inf))[: args.top]
    print(f"{'doc_id':>16} {'tokens':>8} {'logprob':>12} {'perplexity':>12}")
    for d in order:
        print(f"{str(doc_id[d]):>16} {tokens[d]:>8d} {logprob[d]:>12.3f} {ppl[d]:>12.4f}")
    if args.png:
        write_png(args.png, ppl, corpus)
        print(f"-> {args.png}")
    if args.table:
        write_table(args.table, doc_id, tokens, logprob, ppl)
        print(f"-> {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
