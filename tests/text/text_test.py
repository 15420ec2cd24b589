"""Tests of the text path: moe-prepare, long-document windows in moe-score, moe-summarize.

Run by ctest (label `text`) with the virtual environment's Python:
    text_test.py BIN_DIR INPUTS_DIR [unittest arguments, e.g. a test class]
The tokenizer is trained here on a small random corpus (no download); the model is a random
mixtral-tiny from moe-synth.
"""
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

BIN = INPUTS = None
WORDS = [
    "the", "model", "expert", "token", "router", "batch", "layer", "scores", "window", "document",
    "perplexity", "corpus", "parallel", "gating", "all-to-all", "über", "naïve", "日本", "😀", "x",
]


def run(*args, check=True, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def random_text(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words)) + rng.choice(["", ".", "!\n", " \tend"])


def train_tokenizer(path, corpus, vocab_size=300, added=0):
    """A small byte-level BPE with `<s>` as BOS through its own post-processing template, and
    `added` extra added tokens (to make it larger than a model's vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok.add_tokens([f"<extra_{i}>" for i in range(added)])
    tok.save(str(path))
    return tok


def read_tokens(path):
    with h5py.File(path, "r") as f:
        offsets, tokens = f["offsets"][:], f["tokens"][:]
        rows = [tokens[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        doc_id = f["doc_id"].asstr()[:] if h5py.check_string_dtype(f["doc_id"].dtype) else f["doc_id"][:]
        return rows, f["score_from"][:], f["row_doc"][:], list(doc_id), dict(f.attrs)


def write_ragged(path, rows):
    with h5py.File(path, "w") as f:
        f["tokens"] = np.concatenate(rows).astype(np.int32)
        f["offsets"] = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)


class TextCase(unittest.TestCase):
    """A scratch folder with a trained tokenizer, a corpus of documents and a random model."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="moe_text_")
        rng = random.Random(1234)
        cls.texts = [random_text(rng, rng.randint(1, 60)) for _ in range(40)]
        cls.texts[3] = "a\u2028line separator and \u00a0nbsp"  # not line breaks for JSONL
        cls.tokenizer = train_tokenizer(os.path.join(cls.dir, "tokenizer.json"), cls.texts * 3)
        cls.tok_path = os.path.join(cls.dir, "tokenizer.json")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def prepare(self, *args, check=True):
        return run(os.path.join(BIN, "moe-prepare"), "--tokenizer", self.tok_path, *args, check=check)

    def write_jsonl(self, name, records):
        with open(self.path(name), "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        return self.path(name)

    def model(self):
        model = self.path("model.h5")
        if not os.path.exists(model):
            run(os.path.join(BIN, "moe-synth"), "model", os.path.join(INPUTS, "models", "mixtral-tiny.yaml"), model)
        return model

    def run_score(self, tokens, out, check=True):
        run_yaml = self.path("run.yaml")
        with open(run_yaml, "w") as f:
            f.write(f"model: {self.model()}\ninput: {tokens}\noutput: {out}\nreport: {out}.json\nbatch_size: 16\n")
        return run(os.path.join(BIN, "moe-score"), run_yaml, check=check)

    def score_refused(self, tokens):
        """moe-score's message for a token file it must refuse before writing anything."""
        out = self.path("refused.h5")
        r = self.run_score(tokens, out, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(os.path.exists(out))
        return r.stdout + r.stderr

    def score(self, tokens, out):
        self.run_score(tokens, out)
        with h5py.File(out, "r") as f:
            return f["logprobs"][:], f["offsets"][:], f["seq_logprob"][:], f["seq_tokens"][:]


class TokenizeTest(TextCase):
    """Token ids equal the tokenizers library's own encoding, for every input format, with and
    without BOS (the BOS case is the tokenizer's own template, add_special_tokens=True)."""

    def expected(self, bos):
        return [self.tokenizer.encode(t, add_special_tokens=bos).ids for t in self.texts]

    def check(self, out, bos, ids=None):
        rows, score_from, row_doc, doc_id, attrs = read_tokens(out)
        self.assertEqual([r.tolist() for r in rows], self.expected(bos))
        self.assertEqual(row_doc.tolist(), list(range(len(self.texts))))
        self.assertEqual(score_from.tolist(), [0] * len(self.texts))
        self.assertEqual(doc_id, ids if ids is not None else list(range(len(self.texts))))
        self.assertEqual(attrs["tokenizer_vocab_size"], self.tokenizer.get_vocab_size())
        self.assertEqual(attrs["bos_id"], self.tokenizer.token_to_id("<s>") if bos else -1)

    def test_jsonl(self):
        ids = [f"doc-{i}" for i in range(len(self.texts))]
        src = self.write_jsonl("in.jsonl", [{"id": d, "body": t, "other": 1} for d, t in zip(ids, self.texts)])
        for bos in (False, True):
            out = self.path(f"jsonl{bos}.h5")
            self.prepare("--input", src, "--field", "body", "--id-field", "id", "--out", out, *(["--bos"] * bos))
            self.check(out, bos, ids)
            with h5py.File(out, "r") as f, open(src, "rb") as s:
                import hashlib

                self.assertEqual(f.attrs["source_sha256"], hashlib.sha256(s.read()).hexdigest())

    def test_jsonl_small_chunks_and_integer_ids(self):
        src = self.write_jsonl("int.jsonl", [{"n": 100 + i, "text": t} for i, t in enumerate(self.texts)])
        out = self.path("int.h5")
        self.prepare("--input", src, "--id-field", "n", "--chunk-docs", "3", "--out", out)
        self.check(out, False, [100 + i for i in range(len(self.texts))])

    def test_parquet(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        src = self.path("in.parquet")
        pq.write_table(pa.table({"content": self.texts, "k": list(range(len(self.texts)))}), src, row_group_size=7)
        for bos in (False, True):
            out = self.path(f"parquet{bos}.h5")
            self.prepare("--input", src, "--field", "content", "--chunk-docs", "5", "--out", out, *(["--bos"] * bos))
            self.check(out, bos)

    def test_plain_text(self):
        # One document per line: texts without line breaks of their own.
        self.texts = [t.replace("\n", " ").replace("\u2028", " ") for t in type(self).texts]
        src = self.path("in.txt")
        with open(src, "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(self.texts) + "\n")
        for bos in (False, True):
            out = self.path(f"text{bos}.h5")
            self.prepare("--input", src, "--out", out, *(["--bos"] * bos))
            self.check(out, bos)


class WindowTest(TextCase):
    """Long documents: windows of --max-len tokens, --stride new tokens each."""

    def setUp(self):
        rng = random.Random(7)
        self.records = [{"text": random_text(rng, n)} for n in (3, 20, 40, 12, 55, 1, 30)]
        self.src = self.write_jsonl("long.jsonl", self.records)
        self.lengths = [len(self.tokenizer.encode(r["text"], add_special_tokens=True).ids) for r in self.records]
        self.assertLessEqual(max(self.lengths), 256)  # mixtral-tiny's max_positions: the unsplit run fits

    def doc_scores(self, tokens, scores, name):
        table = self.path(f"{name}.csv")
        run(os.path.join(BIN, "moe-summarize"), "--tokens", tokens, "--scores", scores, "--table", table)
        import pandas

        return pandas.read_csv(table)

    def test_windows_longer_than_every_document_equal_the_unsplit_run(self):
        whole, windowed = self.path("whole.h5"), self.path("wide.h5")
        self.prepare("--input", self.src, "--bos", "--out", whole)
        self.prepare("--input", self.src, "--bos", "--max-len", str(max(self.lengths)), "--stride", "3", "--out", windowed)
        rows, score_from, _, _, _ = read_tokens(windowed)
        self.assertEqual(len(rows), len(self.records))
        self.assertEqual(score_from.tolist(), [0] * len(rows))
        self.score(whole, self.path("whole_s.h5"))
        self.score(windowed, self.path("wide_s.h5"))
        a = self.doc_scores(whole, self.path("whole_s.h5"), "whole")
        b = self.doc_scores(windowed, self.path("wide_s.h5"), "wide")
        self.assertTrue(a.equals(b), f"{a}\n{b}")
        self.assertEqual(a["tokens"].tolist(), [n - 1 for n in self.lengths])

    def test_stride_shorter_than_window_matches_brute_force(self):
        max_len, stride = 24, 7
        tokens = self.path("win.h5")
        self.prepare("--input", self.src, "--bos", "--max-len", str(max_len), "--stride", str(stride), "--out", tokens)
        rows, score_from, row_doc, _, _ = read_tokens(tokens)
        logprobs, offsets, seq_logprob, seq_tokens = self.score(tokens, self.path("win_s.h5"))
        docs = [self.tokenizer.encode(r["text"], add_special_tokens=True).ids for r in self.records]

        # Gather what the windowed run scored: (doc, position) -> logprob, each exactly once.
        scored = {}
        for r, row in enumerate(rows):
            d = int(row_doc[r])
            b = self.row_begin(d, r, rows, row_doc, max_len, stride, len(docs[d]))
            self.assertEqual(row.tolist(), docs[d][b : b + len(row)])
            for t in range(len(row)):
                value = logprobs[offsets[r] + t]
                if math.isnan(value):
                    continue
                self.assertNotIn((d, b + t), scored)
                scored[(d, b + t)] = float(value)
            self.assertEqual(seq_tokens[r], sum(not math.isnan(v) for v in logprobs[offsets[r] : offsets[r + 1]]))
        want = {(d, t) for d, doc in enumerate(docs) for t in range(1, len(doc))}
        self.assertEqual(set(scored), want)

        # Brute force: one row per token, exactly the context the window rule gives it.
        keys = sorted(want)
        brute_rows = [docs[d][self.context_start(t, len(docs[d]), max_len, stride) : t + 1] for d, t in keys]
        brute = self.path("brute.h5")
        write_ragged(brute, [np.asarray(r) for r in brute_rows])
        b_logprobs, b_offsets, _, _ = self.score(brute, self.path("brute_s.h5"))
        worst = max(abs(scored[k] - float(b_logprobs[b_offsets[i + 1] - 1])) for i, k in enumerate(keys))
        print(f"max |d logprob| windows vs brute force over {len(keys)} tokens: {worst:.2e}")
        self.assertLessEqual(worst, 1e-5)
        # Some tokens really had truncated context (the test exercises the windows).
        self.assertGreater(sum(len(r) < t + 1 for r, (_, t) in zip(brute_rows, keys)), 50)

        # Per document, the windows' sums are the sums of its tokens.
        table = self.doc_scores(tokens, self.path("win_s.h5"), "win")
        for d in range(len(docs)):
            total = sum(scored[(d, t)] for t in range(1, len(docs[d])))
            self.assertAlmostEqual(table["logprob"][d], total, delta=1e-4)
            self.assertEqual(table["tokens"][d], len(docs[d]) - 1)

    @staticmethod
    def context_start(t, length, max_len, stride):
        """The window rule, written independently of moe-prepare: token t (>= 1) of a document of
        `length` tokens is scored in the first window whose end passes t; windows end at max_len,
        max_len + stride, ... (capped at the length) and reach back max_len tokens."""
        if t < max_len:
            return 0
        k = -(-(t + 1 - max_len) // stride)  # windows after the first until one ends past t
        end = min(max_len + k * stride, length)
        return end - max_len

    def row_begin(self, d, r, rows, row_doc, max_len, stride, length):
        k = r - int(np.argmax(row_doc == d))  # the row's window number within its document
        end = min(max_len + k * stride, length) if length > max_len else length
        return max(end - max_len, 0)


class BadInputTest(TextCase):
    """Bad inputs: one line naming the file, record and field; no output file left behind."""

    def expect_error(self, src, *args, says):
        out = self.path("bad.h5")
        r = self.prepare("--input", src, "--out", out, *args, check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        for text in says:
            self.assertIn(text, lines[0])
        self.assertFalse(os.path.exists(out))
        self.assertEqual([n for n in os.listdir(self.dir) if "partial" in n], [])
        return lines[0]

    def records(self, bad, at=25):
        good = [{"id": i, "text": t} for i, t in enumerate(self.texts)]
        good[at] = bad
        return good

    def test_missing_field(self):
        src = self.write_jsonl("missing.jsonl", self.records({"id": 25, "txt": "hello"}))
        self.expect_error(src, "--chunk-docs", "4", says=[src, "record 25 (line 26)", "field 'text'", "missing"])

    def test_missing_id_field(self):
        src = self.write_jsonl("noid.jsonl", self.records({"text": "hello"}))
        self.expect_error(src, "--id-field", "id", says=[src, "record 25", "field 'id'", "missing"])

    def test_empty_document(self):
        src = self.write_jsonl("empty.jsonl", self.records({"id": 25, "text": ""}))
        self.expect_error(src, says=[src, "record 25", "field 'text'", "empty document"])
        txt = self.path("empty.txt")
        with open(txt, "w") as f:
            f.write("one\ntwo\n\nfour\n")
        self.expect_error(txt, says=[txt, "record 2 (line 3)", "empty document"])

    def test_non_utf8(self):
        src = self.write_jsonl("latin1.jsonl", self.records({"id": 25, "text": "PLACEHOLDER"}))
        with open(src, "rb") as f:
            data = f.read().replace(b"PLACEHOLDER", b"caf\xe9")
        with open(src, "wb") as f:
            f.write(data)
        self.expect_error(src, says=[src, "record 25 (line 26)", "not valid UTF-8"])
        surrogate = self.path("surrogate.jsonl")
        with open(surrogate, "w") as f:
            f.write('{"text": "fine"}\n{"text": "bad \\udcff"}\n')
        self.expect_error(surrogate, says=[surrogate, "record 1 (line 2)", "field 'text'", "not valid UTF-8"])
        import pyarrow as pa
        import pyarrow.parquet as pq

        pqt = self.path("bad.parquet")
        pq.write_table(pa.table({"text": pa.array([b"ok", b"also ok", b"\xff\xfe"], pa.binary())}), pqt)
        self.expect_error(pqt, says=[pqt, "record 2", "field 'text'", "not valid UTF-8"])
        txt = self.path("bad.txt")
        with open(txt, "wb") as f:
            f.write(b"ok\nbad \xc3\x28\n")
        self.expect_error(txt, says=[txt, "record 1 (line 2)", "not valid UTF-8"])

    def test_output_is_the_input(self):
        src = self.write_jsonl("same.jsonl", [{"text": t} for t in self.texts])
        with open(src, "rb") as f:
            before = f.read()
        r = self.prepare("--input", src, "--out", src, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is the input", r.stderr)
        with open(src, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_vocabulary_larger_than_the_model(self):
        big = self.path("big_tokenizer.json")
        train_tokenizer(big, self.texts * 3, added=512)  # mixtral-tiny has 512
        src = self.write_jsonl("ok.jsonl", [{"text": t} for t in self.texts])
        out = self.path("big.h5")
        r = run(os.path.join(BIN, "moe-prepare"), "--tokenizer", big, "--input", src, "--model", self.model(),
                "--out", out, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(big, r.stderr)
        self.assertIn("vocab_size 512", r.stderr)
        self.assertFalse(os.path.exists(out))
        # Prepared without --model, moe-score refuses the file before scoring.
        run(os.path.join(BIN, "moe-prepare"), "--tokenizer", big, "--input", src, "--out", out)
        message = self.score_refused(out)
        self.assertIn(f"tokenizer_vocab_size = {self.tokenizer.get_vocab_size() + 512}", message)


class ScoreFromTest(TextCase):
    """moe-score refuses a score_from outside [0, length] with one line naming the row."""

    def test_out_of_range(self):
        src = self.write_jsonl("sf.jsonl", [{"text": t} for t in self.texts])
        tokens = self.path("sf.h5")
        self.prepare("--input", src, "--out", tokens)
        with h5py.File(tokens, "r+") as f:
            f["score_from"][5] = f["offsets"][6] - f["offsets"][5] + 1
        self.assertIn(f"{tokens}: score_from[5]", self.score_refused(tokens))


class SummarizeTest(TextCase):
    """The table, PNG and corpus perplexity from moe-score's per-row results."""

    def test_table_png_and_corpus_perplexity(self):
        src = self.write_jsonl("s.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(self.texts)])
        tokens, scores = self.path("s_tokens.h5"), self.path("s_scores.h5")
        self.prepare("--input", src, "--id-field", "id", "--bos", "--max-len", "16", "--stride", "5", "--out", tokens)
        _, _, seq_logprob, seq_tokens = self.score(tokens, scores)
        table, png = self.path("docs.parquet"), self.path("ppl.png")
        r = run(os.path.join(BIN, "moe-summarize"), "--tokens", tokens, "--scores", scores, "--table", table, "--png", png)
        import pandas

        df = pandas.read_parquet(table)
        self.assertEqual(list(df.columns), ["doc_id", "tokens", "logprob", "perplexity"])
        self.assertEqual(df["doc_id"].tolist(), [f"r{i}" for i in range(len(self.texts))])
        lengths = [len(self.tokenizer.encode(t).ids) for t in self.texts]
        self.assertEqual(df["tokens"].tolist(), [n - 1 for n in lengths])
        np.testing.assert_allclose(np.exp(-df["logprob"] / df["tokens"]), df["perplexity"], rtol=1e-12)
        self.assertAlmostEqual(df["logprob"].sum(), float(seq_logprob.sum()), delta=1e-6)
        corpus = math.exp(-float(seq_logprob.sum()) / float(seq_tokens.sum()))
        self.assertIn(f"corpus perplexity {corpus:.4f}", r.stdout)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


class ConvertTest(TextCase):
    """moe-convert copies tokenizer.json from the Hugging Face folder next to the converted model."""

    def test_tokenizer_travels_with_the_model(self):
        hf = self.path("hf")
        run(sys.executable, os.path.join(os.path.dirname(INPUTS), "tests", "support", "hf_tiny.py"), "write", "mixtral",
            hf, "--seed", "3")
        shutil.copy(self.tok_path, os.path.join(hf, "tokenizer.json"))
        os.makedirs(self.path("converted"))
        model = self.path("converted/model.h5")
        r = run(os.path.join(BIN, "moe-convert"), hf, model)
        self.assertIn("tokenizer.json", r.stdout)
        with open(self.tok_path, "rb") as a, open(self.path("converted/tokenizer.json"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        # The copy is what moe-prepare --model expects beside the model.
        src = self.write_jsonl("c.jsonl", [{"text": t} for t in self.texts])
        run(os.path.join(BIN, "moe-prepare"), "--tokenizer", self.path("converted/tokenizer.json"), "--model", model,
            "--input", src, "--out", self.path("c.h5"))


if __name__ == "__main__":
    BIN, INPUTS = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
