// Float64 reference model: checkpoint and token readers (plain serial HDF5 C API) and the full
// decoder forward pass of docs/formats.md, written independently of lib/ for the tests.
// Errors (missing key, bad shape, bad value) throw std::runtime_error naming what and where.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "reference_kernels.hpp"

namespace ref {

// One root attribute of the checkpoint, as stored.
struct Attribute {
    bool is_string = false;
    std::string text;             // string attributes
    std::vector<double> numbers;  // numeric attributes (integers converted exactly up to 2^53)
};

// The architecture, from the root attributes (formats.md, "Checkpoint").
struct Config {
    std::string format, family, norm, position, activation, shared_gate;
    std::int64_t format_version = 0;
    std::int64_t vocab_size = 0, hidden_size = 0, num_layers = 0;
    std::int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_positions = 0;
    double norm_eps = 0.0, rope_theta = 0.0;
    bool qkv_bias = false, router_renormalize = false, tie_embeddings = false;
    bool qk_norm = false;  // optional attribute: RMSNorm over whole q and k rows before RoPE
    std::int64_t dense_ffn = 0, expert_ffn = 0, top_k = 0, shared_ffn = 0;
    std::vector<std::int64_t> layer_num_experts;
};

struct Tensor {
    std::vector<std::size_t> shape;
    Vec data;  // row-major, converted from float32 or bf16 to double
};

struct Model {
    Config config;
    std::map<std::string, Attribute> attributes;  // every root attribute
    std::map<std::string, Tensor> tensors;        // every dataset, by path without leading '/'

    bool has(const std::string& path) const { return tensors.count(path) != 0; }
    // The dataset at path; throws if it is missing or its shape is not `shape`.
    const Tensor& tensor(const std::string& path, const std::vector<std::size_t>& shape) const;
};

Model load_model(const std::string& path);

// --- The forward pass, in pieces so tests can check one module of the library at a time. ---
// All activations are row-major [S, d] for one sequence of S tokens.

// Token embedding, plus the learned position embedding (positions 0..S-1) when position=learned.
Vec embed(const Model& m, std::span<const std::int32_t> tokens);
// The configured norm (rmsnorm or layernorm) with the weights under `prefix` (e.g. "final_norm").
Vec apply_norm(const Model& m, const std::string& prefix, CSpan x);
// Attention of layer i on already-normed input x[S, d] (positions 0..S-1), o_proj included.
Vec attention_block(const Model& m, int layer, CSpan x);
// The configured MLP (swiglu or gelu) of size ffn with weights under prefix (".../mlp").
Vec mlp_block(const Model& m, const std::string& prefix, std::size_t ffn, CSpan x);
// Static gating (GShard-style capacity): each expert takes at most
// capacity = max(1, ceil(capacity_factor * S * k / E)) of the S tokens' k choices, in token order
// and, within a token, in top-k order; the choices that do not fit are dropped (they add nothing;
// the kept weights are not renormalised).
struct StaticGating {
    double capacity_factor = 1.0;
    std::int64_t dropped = 0;   // choices dropped so far (accumulated over calls)
    double min_margin = 1.0;    // smallest gap between the k-th and (k+1)-th probability seen
};

// MoE of layer i on already-normed input x[S, d]: routed experts plus shared MLP.
// When routing is not null it receives each token's top-k choice; with `gating`, choices over
// capacity are dropped.
Vec moe_block(const Model& m, int layer, CSpan x, std::vector<TopK>* routing = nullptr,
              StaticGating* gating = nullptr);
// One pre-norm decoder layer: h + attn(norm(h)), then + mlp_or_moe(norm(h)).
Vec decoder_layer(const Model& m, int layer, CSpan h);
// Hidden states after all layers and the final norm, [S, d].
Vec final_hidden(const Model& m, std::span<const std::int32_t> tokens);
// LM-head logits [S, V] (lm_head, or embed_tokens when tied).
Vec lm_logits(const Model& m, CSpan hidden);

// Log-probability per position: index 0 is NaN, index t is log p(tokens[t] | tokens[<t]).
// Throws if a token id is out of range or the sequence is longer than max_positions.
std::vector<double> score_sequence(const Model& m, std::span<const std::int32_t> tokens);

// Scores a batch of sequences routed together under static gating: the MoE layers see all of the
// batch's tokens at once (sequences in order), as one gating group. One result per sequence.
std::vector<std::vector<double>> score_batch_static(const Model& m,
                                                    const std::vector<std::vector<std::int32_t>>& batch,
                                                    StaticGating& gating);

// A token file (formats.md, "Tokens"), as one vector per sequence.
struct Tokens {
    std::vector<std::vector<std::int32_t>> sequences;
    bool ragged = false;
    std::size_t padded_width = 0;       // S of the padded form, 0 when ragged
    std::vector<std::int64_t> offsets;  // ragged form only: as stored, N+1 entries
};

Tokens load_tokens(const std::string& path);

}  // namespace ref
