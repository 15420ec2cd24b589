// Float64 reference kernels for the test suite.
//
// Written from docs/formats.md alone, independently of lib/, so that tests compare the library
// against a second, deliberately plain implementation. Everything is double, row-major, and
// computed in the most direct way (no tiling, no fused tricks). Shape errors throw
// std::invalid_argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ref {

using Vec = std::vector<double>;
using CSpan = std::span<const double>;

// y[T, out] = x[T, in] W[out, in]^T (+ bias[out] when not empty).
Vec linear(CSpan x, CSpan w, std::size_t out, std::size_t in, CSpan bias = {});

// Per row of x[T, d] (d = w.size()): x / sqrt(mean(x^2) + eps) * w.
Vec rms_norm(CSpan x, CSpan w, double eps);

// Per row of x[T, d]: (x - mean) / sqrt(var + eps) * w + b, biased variance.
Vec layer_norm(CSpan x, CSpan w, CSpan b, double eps);

// RoPE, HF rotate-half layout, on x[T, heads*head_dim] with one position per row:
// for i < head_dim/2, angle = pos * theta^(-2i/head_dim),
// (x_i, x_{i+hd/2}) -> (x_i cos - x_{i+hd/2} sin, x_{i+hd/2} cos + x_i sin).
Vec rope(CSpan x, std::span<const std::int64_t> positions, std::size_t heads, std::size_t head_dim,
         double theta);

// Causal self-attention for one sequence: q[S, H*hd], k and v [S, KV*hd] -> [S, H*hd].
// Query head h reads kv head h / (H/KV); scores scaled by 1/sqrt(hd); softmax over keys 0..t.
Vec causal_attention(CSpan q, CSpan k, CSpan v, std::size_t heads, std::size_t kv_heads,
                     std::size_t head_dim);

double sigmoid(double x);
double silu(double x);      // x * sigmoid(x)
double gelu_erf(double x);  // 0.5 x (1 + erf(x / sqrt 2)), the exact (non-tanh) GELU

// down(silu(gate x) * up x): x[T, d], gate and up [ffn, d], down [d, ffn].
Vec swiglu_mlp(CSpan x, CSpan gate, CSpan up, CSpan down, std::size_t d, std::size_t ffn);
// down(gelu_erf(up x)): x[T, d], up [ffn, d], down [d, ffn].
Vec gelu_mlp(CSpan x, CSpan up, CSpan down, std::size_t d, std::size_t ffn);

// Softmax of a vector (max-subtracted).
Vec softmax(CSpan logits);

struct TopK {
    std::vector<int> ids;  // k expert ids, largest probability first, ties -> lower id first
    Vec weights;           // their softmax probabilities (renormalised to sum 1 if asked)
};
// Softmax over all E logits, then the k largest; k <= E.
TopK softmax_topk(CSpan logits, std::size_t k, bool renormalize);

// log softmax(logits)[target] over the whole vector.
double log_softmax_at(CSpan logits, std::size_t target);

}  // namespace ref
