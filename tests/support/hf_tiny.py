#!/usr/bin/python3
"""Tiny Hugging Face checkpoints for the import tests, and an independent float64 forward pass.

`write`   writes a folder as `save_pretrained` would: config.json with the architecture's keys, and
          model.safetensors (or shards + model.safetensors.index.json) with transformers' tensor
          names, shapes and dtypes (F32, BF16 or F16). Weights are fresh random draws.
`score`   reads such a folder with its own safetensors parser and computes, in float64 numpy,
          what transformers' modeling code computes for the architecture (written from
          modeling_mixtral.py, modeling_qwen2_moe.py, modeling_olmoe.py and DeepSeek-MoE v1's
          modeling_deepseek.py, never from moebatch's code), for the sequences of a token file;
          it writes logprobs shaped like the tokens (NaN at t=0 and on padding).
`big`     writes a large random Mixtral-layout checkpoint (for the converter's memory test).

Bad-input variants (`--mutate`): f64 (one tensor stored as F64), missing (one tensor left
out), shape (one tensor with a shape that disagrees with config.json), extra (a tensor that
config.json does not describe, beside an ignorable rotary_emb.inv_freq buffer).
Run with Debian's /usr/bin/python3 (numpy, h5py).
"""
import argparse
import json
import os
import struct
import sys

import h5py
import numpy as np

# --- safetensors, written and read by hand (no safetensors package here) ---

DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (None, 2), "F64": (np.float64, 8)}


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns, round to nearest even (as torch does)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode(x, dtype):
    """The bytes of float32 array x stored as dtype, and the values as stored (float64)."""
    if dtype == "BF16":
        bits = to_bf16_bits(x)
        return bits.tobytes(), from_bf16_bits(bits).astype(np.float64)
    stored = np.ascontiguousarray(x, dtype=DTYPES[dtype][0])
    return stored.tobytes(), stored.astype(np.float64)


def write_safetensors(path, tensors):
    """tensors: list of (name, shape, dtype, bytes)."""
    header, offset = {}, 0
    for name, shape, dtype, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        raw = blob[8 + n + begin:8 + n + end]
        if e["dtype"] == "BF16":
            values = from_bf16_bits(np.frombuffer(raw, dtype=np.uint16))
        else:
            values = np.frombuffer(raw, dtype=DTYPES[e["dtype"]][0])
        out[name] = values.astype(np.float64).reshape(e["shape"])
    return out


def read_folder(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index)
             else ["model.safetensors"])
    weights = {}
    for f in files:
        weights.update(read_safetensors(os.path.join(folder, f)))
    return weights


# --- tiny architectures: config.json and the tensors transformers expects ---

def tiny_config(arch):
    common = {"vocab_size": 320, "hidden_act": "silu", "max_position_embeddings": 128, "initializer_range": 0.02,
              "attention_dropout": 0.0, "use_cache": True, "bos_token_id": 1, "eos_token_id": 2,
              "torch_dtype": "float32", "rope_scaling": None}
    if arch == "mixtral":
        # head_dim given explicitly and H*hd != hidden: catches a transposed q/o projection.
        return dict(common, architectures=["MixtralForCausalLM"], model_type="mixtral", hidden_size=48,
                    intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, rms_norm_eps=1e-5, rope_theta=1e6, tie_word_embeddings=False,
                    num_local_experts=6, num_experts_per_tok=2, sliding_window=None, router_jitter_noise=0.0,
                    output_router_logits=False, router_aux_loss_coef=0.02)
    if arch in ("qwen2moe", "qwen2moe-step2"):
        step2 = arch == "qwen2moe-step2"
        return dict(common, architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe", hidden_size=64,
                    intermediate_size=88, moe_intermediate_size=24, shared_expert_intermediate_size=56,
                    num_hidden_layers=4 if step2 else 3, num_attention_heads=4, num_key_value_heads=2,
                    rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=step2, num_experts=10,
                    num_experts_per_tok=3, norm_topk_prob=step2, decoder_sparse_step=2 if step2 else 1,
                    mlp_only_layers=[] if step2 else [1], use_sliding_window=False, sliding_window=4096,
                    max_window_layers=28, output_router_logits=False, router_aux_loss_coef=0.001)
    if arch == "olmoe":
        return dict(common, architectures=["OlmoeForCausalLM"], model_type="olmoe", hidden_size=64,
                    intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=False, clip_qkv=None,
                    tie_word_embeddings=True, num_experts=8, num_experts_per_tok=3, norm_topk_prob=False,
                    output_router_logits=False, router_aux_loss_coef=0.01)
    if arch == "deepseek-freq2":  # MoE on even layers only, one shared expert, no renormalisation
        return dict(tiny_config("deepseek"), num_hidden_layers=4, first_k_dense_replace=0, moe_layer_freq=2,
                    n_shared_experts=1, norm_topk_prob=False, num_experts_per_tok=3)
    if arch == "deepseek":
        return dict(common, architectures=["DeepseekForCausalLM"], model_type="deepseek", hidden_size=64,
                    intermediate_size=120, moe_intermediate_size=20, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=4, n_shared_experts=2, n_routed_experts=12, num_experts_per_tok=4,
                    first_k_dense_replace=1, moe_layer_freq=1, norm_topk_prob=True, scoring_func="softmax",
                    aux_loss_alpha=0.001, seq_aux=True, rms_norm_eps=1e-6, rope_theta=10000.0,
                    attention_bias=False, pretraining_tp=1, tie_word_embeddings=False,
                    auto_map={"AutoConfig": "configuration_deepseek.DeepseekConfig",
                              "AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM"})
    raise SystemExit(f"unknown architecture {arch}")


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def moe_layer(cfg, i):
    """Whether layer i is sparse, by each architecture's own rule."""
    arch = cfg["architectures"][0]
    if arch == "Qwen2MoeForCausalLM":
        return (i not in cfg["mlp_only_layers"] and cfg["num_experts"] > 0
                and (i + 1) % cfg["decoder_sparse_step"] == 0)
    if arch == "DeepseekForCausalLM":
        return (cfg["n_routed_experts"] is not None and i >= cfg["first_k_dense_replace"]
                and i % cfg["moe_layer_freq"] == 0)
    return True


def tensor_shapes(cfg):
    """(name, shape, kind) in transformers' naming; kind picks the random distribution."""
    arch = cfg["architectures"][0]
    d, V = cfg["hidden_size"], cfg["vocab_size"]
    hd, H, KV = head_dim(cfg), cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = [("model.embed_tokens.weight", (V, d), "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", (d,), "norm"))
        for n, rows in (("q", H * hd), ("k", KV * hd), ("v", KV * hd)):
            out.append((p + f"self_attn.{n}_proj.weight", (rows, d), "linear"))
            if arch == "Qwen2MoeForCausalLM":
                out.append((p + f"self_attn.{n}_proj.bias", (rows,), "bias"))
        if arch == "OlmoeForCausalLM":
            out.append((p + "self_attn.q_norm.weight", (H * hd,), "norm"))
            out.append((p + "self_attn.k_norm.weight", (KV * hd,), "norm"))
        out.append((p + "self_attn.o_proj.weight", (d, H * hd), "linear"))
        out.append((p + "post_attention_layernorm.weight", (d,), "norm"))

        def mlp(prefix, f):
            return [(prefix + "gate_proj.weight", (f, d), "linear"), (prefix + "up_proj.weight", (f, d), "linear"),
                    (prefix + "down_proj.weight", (d, f), "linear")]

        if not moe_layer(cfg, i):
            out += mlp(p + "mlp.", cfg["intermediate_size"])
            continue
        if arch == "MixtralForCausalLM":
            E, F = cfg["num_local_experts"], cfg["intermediate_size"]
            out.append((p + "block_sparse_moe.gate.weight", (E, d), "router"))
            for j in range(E):
                q = p + f"block_sparse_moe.experts.{j}."
                out += [(q + "w1.weight", (F, d), "linear"), (q + "w2.weight", (d, F), "linear"),
                        (q + "w3.weight", (F, d), "linear")]
            continue
        E = cfg["n_routed_experts"] if arch == "DeepseekForCausalLM" else cfg["num_experts"]
        F = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
        out.append((p + "mlp.gate.weight", (E, d), "router"))
        for j in range(E):
            out += mlp(p + f"mlp.experts.{j}.", F)
        if arch == "Qwen2MoeForCausalLM":
            out += mlp(p + "mlp.shared_expert.", cfg["shared_expert_intermediate_size"])
            out.append((p + "mlp.shared_expert_gate.weight", (1, d), "linear"))
        if arch == "DeepseekForCausalLM" and cfg["n_shared_experts"]:
            out += mlp(p + "mlp.shared_experts.", cfg["n_shared_experts"] * F)
    out.append(("model.norm.weight", (d,), "norm"))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (V, d), "linear"))
    return out


def draw(rng, shape, kind):
    if kind == "embed":
        return rng.standard_normal(shape, dtype=np.float32)
    if kind == "norm":
        return (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    if kind == "bias":
        return (0.2 * rng.standard_normal(shape)).astype(np.float32)
    scale = (2.0 if kind == "router" else 1.0) / np.sqrt(shape[-1])  # decisive routing: no near-ties
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def write_folder(folder, cfg, tensors, shards):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if shards <= 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
        return
    names = [f"model-{s + 1:05d}-of-{shards:05d}.safetensors" for s in range(shards)]
    parts = [tensors[s::shards] for s in range(shards)]  # interleaved: layers span several shards
    weight_map = {}
    for name, part in zip(names, parts):
        write_safetensors(os.path.join(folder, name), part)
        weight_map.update({t[0]: name for t in part})
    total = sum(len(t[3]) for t in tensors)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def cmd_write(args):
    cfg = tiny_config(args.arch)
    rng = np.random.default_rng(args.seed)
    tensors = []
    for name, shape, kind in tensor_shapes(cfg):
        data, _ = encode(draw(rng, shape, kind), args.dtype)
        tensors.append((name, shape, args.dtype, data))
    if args.mutate:
        victim = 2  # layer 0's q_proj
        name, shape, dtype, data = tensors[victim]
        if args.mutate == "f64":
            tensors[victim] = (name, shape, "F64", rng.standard_normal(int(np.prod(shape))).tobytes())
        elif args.mutate == "missing":
            del tensors[victim]
        elif args.mutate == "shape":  # same bytes, rows and columns swapped
            tensors[victim] = (name, tuple(reversed(shape)), dtype, data)
        elif args.mutate == "extra":  # an OLMoE tensor config.json does not describe, and an ignorable buffer
            rows = shape[0]
            tensors.append(("model.layers.0.self_attn.q_norm.weight", (rows,), dtype,
                            encode(draw(rng, (rows,), "norm"), dtype)[0]))
            tensors.append(("model.layers.0.self_attn.rotary_emb.inv_freq", (8,), "F32",
                            np.ones(8, dtype=np.float32).tobytes()))
        print(name)
    write_folder(args.out, cfg, tensors, args.shards)


def cmd_big(args):
    """A Mixtral-layout checkpoint of about args.mb megabytes, random F32."""
    cfg = dict(tiny_config("mixtral"), hidden_size=512, head_dim=64, num_attention_heads=8, num_key_value_heads=4,
               intermediate_size=1024, num_local_experts=8, vocab_size=8000, num_hidden_layers=1)
    per_layer = 4 * (8 * 3 * 1024 * 512 + 2 * 512 * 512 + 2 * 256 * 512 + 8 * 512)
    cfg["num_hidden_layers"] = max(1, int(np.ceil((args.mb * 1e6 - 2 * 4 * 8000 * 512) / per_layer)))
    rng = np.random.default_rng(args.seed)
    tensors = [(n, s, "F32", draw(rng, s, k).tobytes()) for n, s, k in tensor_shapes(cfg)]
    write_folder(args.out, cfg, tensors, 1)


# --- the float64 forward pass, transformers' semantics per architecture ---

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, theta):
    """x [S, heads, hd]; rotate-half layout: inv_freq over even indices, cat(freqs, freqs)."""
    S, _, hd = x.shape
    inv_freq = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    freqs = np.outer(np.arange(S, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    rotated = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)
    return x * cos + rotated * sin


def attention(cfg, w, p, x):
    arch = cfg["architectures"][0]
    S = x.shape[0]
    hd, H, KV = head_dim(cfg), cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def proj(n):
        y = x @ w[p + f"self_attn.{n}_proj.weight"].T
        if arch == "Qwen2MoeForCausalLM":
            y = y + w[p + f"self_attn.{n}_proj.bias"]
        return y

    q, k, v = proj("q"), proj("k"), proj("v")
    if arch == "OlmoeForCausalLM":  # q_norm / k_norm over the whole projection, before the head split
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], cfg["rms_norm_eps"])
    q = rope(q.reshape(S, H, hd), cfg["rope_theta"])
    k = rope(k.reshape(S, KV, hd), cfg["rope_theta"])
    v = v.reshape(S, KV, hd)
    k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)  # repeat_kv
    scores = np.einsum("shd,thd->hst", q, k) / np.sqrt(hd)
    scores = np.where(np.tril(np.ones((S, S), dtype=bool))[None], scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    out = np.einsum("hst,thd->shd", probs, v).reshape(S, H * hd)
    return out @ w[p + "self_attn.o_proj.weight"].T


def silu(x):
    return x / (1.0 + np.exp(-x))


def swiglu(x, gate, up, down):
    return (silu(x @ gate.T) * (x @ up.T)) @ down.T


def mlp(w, prefix, x):
    return swiglu(x, w[prefix + "gate_proj.weight"], w[prefix + "up_proj.weight"], w[prefix + "down_proj.weight"])


def moe(cfg, w, p, x):
    arch = cfg["architectures"][0]
    block = p + ("block_sparse_moe." if arch == "MixtralForCausalLM" else "mlp.")
    logits = x @ w[block + "gate.weight"].T
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    k = cfg["num_experts_per_tok"]
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    weights = np.take_along_axis(probs, top, axis=-1)
    deepseek = arch == "DeepseekForCausalLM"
    if arch == "MixtralForCausalLM" or (cfg.get("norm_topk_prob") and (k > 1 or not deepseek)):
        eps = 1e-20 if deepseek else 0.0  # DeepSeek's MoEGate: only for top_k > 1, adds 1e-20
        weights = weights / (weights.sum(axis=-1, keepdims=True) + eps)
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            e = block + f"experts.{top[t, j]}."
            if arch == "MixtralForCausalLM":  # w1 = gate, w3 = up, w2 = down
                out = swiglu(x[t:t + 1], w[e + "w1.weight"], w[e + "w3.weight"], w[e + "w2.weight"])
            else:
                out = mlp(w, e, x[t:t + 1])
            y[t] += weights[t, j] * out[0]
    if arch == "Qwen2MoeForCausalLM":
        gate = 1.0 / (1.0 + np.exp(-(x @ w[block + "shared_expert_gate.weight"].T)))
        y += gate * mlp(w, block + "shared_expert.", x)
    if arch == "DeepseekForCausalLM" and cfg["n_shared_experts"]:
        y += mlp(w, block + "shared_experts.", x)
    return y


def logprobs(cfg, w, ids):
    eps = cfg["rms_norm_eps"]
    h = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = h + attention(cfg, w, p, rms_norm(h, w[p + "input_layernorm.weight"], eps))
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        h = h + (moe(cfg, w, p, x) if moe_layer(cfg, i) else mlp(w, p + "mlp.", x))
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    logits = h @ head.T
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    out = np.full(len(ids), np.nan)
    out[1:] = logits[np.arange(len(ids) - 1), ids[1:]] - lse[:-1]
    return out


def cmd_score(args):
    cfg = json.load(open(os.path.join(args.folder, "config.json")))
    w = read_folder(args.folder)
    with h5py.File(args.tokens, "r") as f:
        tokens, lengths = f["tokens"][:], f["lengths"][:]
    out = np.full(tokens.shape, np.nan)
    for s, n in enumerate(lengths):
        if n > 0:
            out[s, :n] = logprobs(cfg, w, tokens[s, :n].astype(np.int64))
    with h5py.File(args.out, "w") as f:
        f["logprobs"] = out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("arch")
    w.add_argument("out")
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--dtype", choices=["F32", "BF16", "F16"], default="F32")
    w.add_argument("--shards", type=int, default=1)
    w.add_argument("--mutate", choices=["f64", "missing", "shape", "extra"])
    s = sub.add_parser("score")
    s.add_argument("folder")
    s.add_argument("tokens")
    s.add_argument("out")
    b = sub.add_parser("big")
    b.add_argument("out")
    b.add_argument("--mb", type=float, required=True)
    b.add_argument("--seed", type=int, required=True)
    args = ap.parse_args()
    {"write": cmd_write, "score": cmd_score, "big": cmd_big}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
