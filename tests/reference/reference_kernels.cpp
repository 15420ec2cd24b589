#include "reference_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace ref {
namespace {

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("ref: ") + what);
}

// Rows of a row-major [rows, width] buffer; width must divide the size exactly.
std::size_t rows_of(CSpan x, std::size_t width, const char* what) {
    require(width > 0 && x.size() % width == 0, what);
    return x.size() / width;
}

}  // namespace

Vec linear(CSpan x, CSpan w, std::size_t out, std::size_t in, CSpan bias) {
    require(w.size() == out * in, "linear: weight is not [out, in]");
    require(bias.empty() || bias.size() == out, "linear: bias is not [out]");
    const std::size_t T = rows_of(x, in, "linear: x is not [T, in]");
    Vec y(T * out);
    for (std::size_t t = 0; t < T; ++t) {
        for (std::size_t o = 0; o < out; ++o) {
            double acc = bias.empty() ? 0.0 : bias[o];
            for (std::size_t i = 0; i < in; ++i) acc += x[t * in + i] * w[o * in + i];
            y[t * out + o] = acc;
        }
    }
    return y;
}

Vec rms_norm(CSpan x, CSpan w, double eps) {
    const std::size_t d = w.size();
    const std::size_t T = rows_of(x, d, "rms_norm: x is not [T, d]");
    Vec y(x.size());
    for (std::size_t t = 0; t < T; ++t) {
        const CSpan row = x.subspan(t * d, d);
        double ms = 0.0;
        for (double v : row) ms += v * v;
        const double inv = 1.0 / std::sqrt(ms / static_cast<double>(d) + eps);
        for (std::size_t i = 0; i < d; ++i) y[t * d + i] = row[i] * inv * w[i];
    }
    return y;
}

Vec layer_norm(CSpan x, CSpan w, CSpan b, double eps) {
    const std::size_t d = w.size();
    require(b.size() == d, "layer_norm: bias and weight differ in size");
    const std::size_t T = rows_of(x, d, "layer_norm: x is not [T, d]");
    Vec y(x.size());
    for (std::size_t t = 0; t < T; ++t) {
        const CSpan row = x.subspan(t * d, d);
        const double mean = std::accumulate(row.begin(), row.end(), 0.0) / static_cast<double>(d);
        double var = 0.0;
        for (double v : row) var += (v - mean) * (v - mean);
        var /= static_cast<double>(d);  // biased (population) variance, as torch LayerNorm
        const double inv = 1.0 / std::sqrt(var + eps);
        for (std::size_t i = 0; i < d; ++i) y[t * d + i] = (row[i] - mean) * inv * w[i] + b[i];
    }
    return y;
}

Vec rope(CSpan x, std::span<const std::int64_t> positions, std::size_t heads, std::size_t head_dim,
         double theta) {
    require(head_dim % 2 == 0, "rope: head_dim must be even");
    const std::size_t width = heads * head_dim;
    const std::size_t T = rows_of(x, width, "rope: x is not [T, heads*head_dim]");
    require(positions.size() == T, "rope: one position per row");
    const std::size_t half = head_dim / 2;
    Vec y(x.begin(), x.end());
    for (std::size_t t = 0; t < T; ++t) {
        for (std::size_t h = 0; h < heads; ++h) {
            const std::size_t base = t * width + h * head_dim;
            for (std::size_t i = 0; i < half; ++i) {
                const double freq =
                    std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
                const double angle = static_cast<double>(positions[t]) * freq;
                const double c = std::cos(angle), s = std::sin(angle);
                const double a = x[base + i], b = x[base + i + half];
                y[base + i] = a * c - b * s;
                y[base + i + half] = b * c + a * s;
            }
        }
    }
    return y;
}

Vec causal_attention(CSpan q, CSpan k, CSpan v, std::size_t heads, std::size_t kv_heads,
                     std::size_t head_dim) {
    require(kv_heads > 0 && heads % kv_heads == 0, "attention: kv_heads must divide heads");
    const std::size_t qw = heads * head_dim, kw = kv_heads * head_dim;
    const std::size_t S = rows_of(q, qw, "attention: q is not [S, H*hd]");
    require(k.size() == S * kw && v.size() == S * kw, "attention: k/v are not [S, KV*hd]");
    const std::size_t group = heads / kv_heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    Vec out(S * qw, 0.0);
    Vec scores(S);
    for (std::size_t h = 0; h < heads; ++h) {
        const std::size_t kvh = h / group;
        for (std::size_t t = 0; t < S; ++t) {
            for (std::size_t j = 0; j <= t; ++j) {
                double dot = 0.0;
                for (std::size_t i = 0; i < head_dim; ++i)
                    dot += q[t * qw + h * head_dim + i] * k[j * kw + kvh * head_dim + i];
                scores[j] = dot * scale;
            }
            const Vec p = softmax(CSpan(scores).first(t + 1));
            for (std::size_t j = 0; j <= t; ++j)
                for (std::size_t i = 0; i < head_dim; ++i)
                    out[t * qw + h * head_dim + i] += p[j] * v[j * kw + kvh * head_dim + i];
        }
    }
    return out;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double silu(double x) { return x * sigmoid(x); }
double gelu_erf(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

Vec swiglu_mlp(CSpan x, CSpan gate, CSpan up, CSpan down, std::size_t d, std::size_t ffn) {
    Vec g = linear(x, gate, ffn, d);
    const Vec u = linear(x, up, ffn, d);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
    return linear(g, down, d, ffn);
}

Vec gelu_mlp(CSpan x, CSpan up, CSpan down, std::size_t d, std::size_t ffn) {
    Vec u = linear(x, up, ffn, d);
    for (double& e : u) e = gelu_erf(e);
    return linear(u, down, d, ffn);
}

Vec softmax(CSpan logits) {
    require(!logits.empty(), "softmax: empty input");
    const double m = *std::max_element(logits.begin(), logits.end());
    Vec p(logits.size());
    double sum = 0.0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        p[i] = std::exp(logits[i] - m);
        sum += p[i];
    }
    for (double& e : p) e /= sum;
    return p;
}

TopK softmax_topk(CSpan logits, std::size_t k, bool renormalize) {
    require(k >= 1 && k <= logits.size(), "softmax_topk: need 1 <= k <= E");
    const Vec p = softmax(logits);
    std::vector<int> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    // Rank by logit (softmax is monotone, and logits cannot collapse to equal values through
    // underflow); stable sort keeps ties in id order, so the lower id wins.
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return logits[a] > logits[b]; });
    TopK r;
    r.ids.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
    for (int id : r.ids) r.weights.push_back(p[static_cast<std::size_t>(id)]);
    if (renormalize) {
        const double sum = std::accumulate(r.weights.begin(), r.weights.end(), 0.0);
        for (double& w : r.weights) w /= sum;
    }
    return r;
}

double log_softmax_at(CSpan logits, std::size_t target) {
    require(target < logits.size(), "log_softmax_at: target out of range");
    const double m = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (double l : logits) sum += std::exp(l - m);
    return logits[target] - m - std::log(sum);
}

}  // namespace ref
