// The per-element and per-row functions of backend/elementwise.hpp, which the CUDA kernels run on
// the device (cuda/kernels/*.cu) and the CPU backend on the host, against the float64 reference
// (tests/reference/), on the host. Each test assembles a kernel's whole computation the way its
// CUDA kernel does (e.g. attention as an online softmax over chunks of keys, the LM head as a fold
// of vocabulary tiles), so the logic the GPU runs is checked on a machine without a GPU. Fresh
// random inputs; the seed is printed with every failure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "backend/elementwise.hpp"
#include "reference_kernels.hpp"

namespace moe::test {
namespace {

using ref::Vec;

class SharedMath : public ::testing::Test {
 protected:
  SharedMath()
      : seed_(std::random_device{}()), rng_(seed_), trace_(__FILE__, __LINE__, "seed " + std::to_string(seed_)) {}
  std::vector<float> random(std::size_t n, float scale = 1.0f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng_);
    return v;
  }
  int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }

  unsigned seed_;
  std::mt19937 rng_;
  ::testing::ScopedTrace trace_;
};

void expect_close(const std::vector<float>& got, const Vec& want, double rtol, double atol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rtol * std::abs(want[i]) + atol) << "at " << i;
}

// exp_poly against double exp over the range softmax, log-sum-exp, SiLU and sigmoid use it in
// (random, and the ends and the clamps), within 3e-7 relative; NaN stays NaN.
TEST_F(SharedMath, ExpPoly) {
  std::vector<float> x = random(20000, 30.0f);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.34657359f, -0.34657359f, -86.9f, 87.9f, -87.0f, 88.0f})
    x.push_back(v);
  for (float v : x) {
    const float c = std::clamp(v, -87.0f, 88.0f);  // the documented clamp
    const double want = std::exp(static_cast<double>(c));
    EXPECT_NEAR(kernels::exp_poly(v), want, 3e-7 * want) << v;
  }
  EXPECT_EQ(kernels::exp_poly(-1000.0f), kernels::exp_poly(-87.0f));
  EXPECT_EQ(kernels::exp_poly(-std::numeric_limits<float>::infinity()), kernels::exp_poly(-87.0f));
  EXPECT_EQ(kernels::exp_poly(1000.0f), kernels::exp_poly(88.0f));
  EXPECT_TRUE(std::isnan(kernels::exp_poly(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(kernels::silu(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_LT(std::abs(kernels::silu(-200.0f)), 1e-30f);
  EXPECT_EQ(kernels::silu(200.0f), 200.0f);
}

TEST_F(SharedMath, Activations) {
  const std::vector<float> x = random(4097, 4.0f);
  for (float v : x) {
    EXPECT_NEAR(kernels::silu(v), ref::silu(v), 2e-6 * std::abs(ref::silu(v)) + 1e-7) << v;
    EXPECT_NEAR(kernels::gelu_erf(v), ref::gelu_erf(v), 2e-6 * std::abs(ref::gelu_erf(v)) + 1e-7) << v;
    EXPECT_NEAR(kernels::sigmoid(v), ref::sigmoid(v), 2e-6 * ref::sigmoid(v) + 1e-7) << v;
  }
}

TEST_F(SharedMath, RmsNormRows) {
  const int64_t m = uniform(1, 9);
  const int64_t d = uniform(1, 700);
  const float eps = 1e-5f;
  const std::vector<float> x = random(static_cast<std::size_t>(m * d));
  const std::vector<float> w = random(static_cast<std::size_t>(d));
  std::vector<float> y(x.size());
  for (int64_t i = 0; i < m; ++i) {
    double sum_sq = 0.0;  // the kernel's block reduction, in double
    for (int64_t j = 0; j < d; ++j) sum_sq += static_cast<double>(x[i * d + j]) * x[i * d + j];
    const float inv = kernels::rms_inv(sum_sq, static_cast<double>(d), eps);
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = x[i * d + j] * inv * w[j];
  }
  expect_close(y, ref::rms_norm(Vec(x.begin(), x.end()), Vec(w.begin(), w.end()), eps), 1e-5, 1e-6);
}

TEST_F(SharedMath, LayerNormRows) {
  const int64_t m = uniform(1, 9);
  const int64_t d = uniform(2, 700);
  const float eps = 1e-5f;
  std::vector<float> x = random(static_cast<std::size_t>(m * d));
  for (auto& v : x) v += 3.0f;  // an offset mean, which the two-pass variance must remove
  const std::vector<float> w = random(static_cast<std::size_t>(d));
  const std::vector<float> b = random(static_cast<std::size_t>(d));
  std::vector<float> y(x.size());
  for (int64_t i = 0; i < m; ++i) {
    // The row statistics in double (the kernel reduces them over the block); the per-element
    // step is the shared function.
    const float* xi = x.data() + i * d;
    const double mean = std::accumulate(xi, xi + d, 0.0) / static_cast<double>(d);
    const double var =
        std::transform_reduce(xi, xi + d, 0.0, std::plus<>(), [mean](float v) { return (v - mean) * (v - mean); });
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(d) + eps);
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = kernels::layer_norm_apply(xi[j], mean, inv, w[j], b[j]);
  }
  expect_close(y, ref::layer_norm(Vec(x.begin(), x.end()), Vec(w.begin(), w.end()), Vec(b.begin(), b.end()), eps), 1e-5,
               1e-5);
}

TEST_F(SharedMath, Rope) {
  const int64_t m = uniform(1, 6);
  const int64_t heads = uniform(1, 4);
  const int64_t head_dim = 2 * uniform(1, 40);
  const double theta = 1e6;
  std::vector<float> x = random(static_cast<std::size_t>(m * heads * head_dim));
  std::vector<int64_t> positions(static_cast<std::size_t>(m));
  for (auto& p : positions) p = uniform(0, 4095);
  const Vec want = ref::rope(Vec(x.begin(), x.end()), positions, static_cast<std::size_t>(heads),
                             static_cast<std::size_t>(head_dim), theta);
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < half; ++p) {
      const double angle = static_cast<double>(positions[i]) * kernels::rope_inv_freq(p, head_dim, theta);
      for (int64_t h = 0; h < heads; ++h) kernels::rope_rotate(x.data() + (i * heads + h) * head_dim, p, half, angle);
    }
  expect_close(x, want, 1e-5, 1e-5);
}

TEST_F(SharedMath, SoftmaxTopk) {
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t e = uniform(1, 64);
    const int64_t k = uniform(1, std::min<int64_t>(e, 8));
    const bool renormalize = trial % 2 == 0;
    std::vector<float> logits = random(static_cast<std::size_t>(e), 2.0f);
    if (e > 2 && trial % 5 == 0) logits[1] = logits[2];  // a tie: the lower id goes first
    std::vector<int32_t> ids(static_cast<std::size_t>(k));
    std::vector<float> weights(static_cast<std::size_t>(k));
    kernels::softmax_topk_row(logits.data(), e, k, renormalize, ids.data(), weights.data());
    const ref::TopK want =
        ref::softmax_topk(Vec(logits.begin(), logits.end()), static_cast<std::size_t>(k), renormalize);
    for (int64_t s = 0; s < k; ++s) {
      EXPECT_EQ(ids[s], want.ids[s]) << "slot " << s << " of e=" << e << " k=" << k;
      EXPECT_NEAR(weights[s], want.weights[s], 1e-6) << "slot " << s;
    }
  }
}

TEST_F(SharedMath, LmHeadTileFold) {
  // The row's log-sum-exp folded tile by tile (tiles of any width, as the kernel's vocabulary
  // tiles), each tile's own log-sum-exp max-subtracted in double.
  const int64_t vocab = uniform(1, 5000);
  const int64_t tile = uniform(1, 700);
  const std::vector<float> logits = random(static_cast<std::size_t>(vocab), 5.0f);
  double acc = -std::numeric_limits<double>::infinity();
  for (int64_t v0 = 0; v0 < vocab; v0 += tile) {
    const int64_t v1 = std::min(vocab, v0 + tile);
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = v0; j < v1; ++j) mx = std::max(mx, logits[j]);
    double sum = 0.0;
    for (int64_t j = v0; j < v1; ++j) sum += std::exp(static_cast<double>(logits[j] - mx));
    acc = kernels::logsumexp_fold(acc, mx + std::log(sum));
  }
  const std::size_t target = static_cast<std::size_t>(uniform(0, vocab - 1));
  const double want = logits[target] - ref::log_softmax_at(Vec(logits.begin(), logits.end()), target);
  EXPECT_NEAR(acc, want, 1e-9 * std::abs(want) + 1e-9);
}

TEST_F(SharedMath, CausalAttentionAsOnlineSoftmaxOverChunks) {
  // One sequence, grouped heads, keys in chunks of `chunk` as the kernel's blocks of threads.
  const int64_t len = uniform(1, 70);
  const int64_t kv_heads = uniform(1, 3);
  const int64_t heads = kv_heads * uniform(1, 3);
  const int64_t head_dim = uniform(1, 24);
  const int64_t chunk = uniform(1, 16);
  const std::vector<float> q = random(static_cast<std::size_t>(len * heads * head_dim));
  const std::vector<float> k = random(static_cast<std::size_t>(len * kv_heads * head_dim));
  const std::vector<float> v = random(static_cast<std::size_t>(len * kv_heads * head_dim));
  const float scale = kernels::attention_scale(head_dim);
  std::vector<float> out(q.size());
  std::vector<float> acc(static_cast<std::size_t>(head_dim));
  std::vector<float> scores(static_cast<std::size_t>(chunk));
  for (int64_t t = 0; t < len; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kvh = h / (heads / kv_heads);
      const float* qi = q.data() + (t * heads + h) * head_dim;
      std::fill(acc.begin(), acc.end(), 0.0f);
      float run_max = -std::numeric_limits<float>::infinity();
      float run_sum = 0.0f;
      for (int64_t j0 = 0; j0 <= t; j0 += chunk) {
        const int64_t count = std::min(chunk, t + 1 - j0);
        float chunk_max = -std::numeric_limits<float>::infinity();
        for (int64_t jj = 0; jj < count; ++jj) {
          const float* kj = k.data() + ((j0 + jj) * kv_heads + kvh) * head_dim;
          float dot = 0.0f;
          for (int64_t c = 0; c < head_dim; ++c) dot += qi[c] * kj[c];
          scores[jj] = dot * scale;
          chunk_max = std::max(chunk_max, scores[jj]);
        }
        const float new_max = std::max(run_max, chunk_max);
        float chunk_sum = 0.0f;
        for (int64_t jj = 0; jj < count; ++jj) chunk_sum += (scores[jj] = std::exp(scores[jj] - new_max));
        const float correction = kernels::softmax_fold(run_max, run_sum, new_max, chunk_sum);
        for (int64_t c = 0; c < head_dim; ++c) {
          float a = acc[c] * correction;
          for (int64_t jj = 0; jj < count; ++jj) a += scores[jj] * v[((j0 + jj) * kv_heads + kvh) * head_dim + c];
          acc[c] = a;
        }
      }
      for (int64_t c = 0; c < head_dim; ++c) out[(t * heads + h) * head_dim + c] = acc[c] / run_sum;
    }
  const Vec want = ref::causal_attention(Vec(q.begin(), q.end()), Vec(k.begin(), k.end()), Vec(v.begin(), v.end()),
                                         static_cast<std::size_t>(heads), static_cast<std::size_t>(kv_heads),
                                         static_cast<std::size_t>(head_dim));
  expect_close(out, want, 1e-4, 1e-5);
}

TEST_F(SharedMath, Bf16RoundingIsNearestEven) {
  // The activations' rounding before a bf16 GEMM: the nearest bf16 (ties to the even mantissa),
  // checked in double against the two neighbouring bf16 values; NaN stays NaN, infinities stay.
  std::vector<float> x = random(5000, 10.0f);
  for (float scale : {1e-30f, 1e-40f, 1e30f}) x.push_back(scale * x[x.size() % 97]);
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(0.0f);
  x.push_back(1.0f + 1.0f / 256.0f);  // exactly between 1 and 1 + 2^-7: ties to even (1)
  const auto value = [](uint16_t bits) {
    const uint32_t wide = static_cast<uint32_t>(bits) << 16;
    float f = 0.0f;
    std::memcpy(&f, &wide, sizeof(f));
    return static_cast<double>(f);
  };
  for (float v : x) {
    const uint16_t r = kernels::bf16_round(v);
    if (std::isinf(v) || v == 0.0f) {  // (the bit neighbours of +0 are not both numbers)
      EXPECT_EQ(value(r), static_cast<double>(v));
      continue;
    }
    const double below = value(static_cast<uint16_t>(r - 1));
    const double above = value(static_cast<uint16_t>(r + 1));
    const double err = std::abs(value(r) - v);
    // No neighbour is closer (for a positive r: r - 1 and r + 1 are the neighbours by magnitude).
    EXPECT_LE(err, std::abs(below - v)) << v;
    EXPECT_LE(err, std::abs(above - v)) << v;
    if (err == std::abs(below - v) || err == std::abs(above - v)) {
      EXPECT_EQ(r & 1u, 0u) << "tie not to even: " << v;
    }
  }
  EXPECT_EQ(kernels::bf16_round(1.0f + 1.0f / 256.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(value(kernels::bf16_round(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_F(SharedMath, VocabRowOfASlice) {
  const int64_t begin = uniform(0, 1000);
  const int64_t rows = uniform(1, 1000);
  for (int trial = 0; trial < 200; ++trial) {
    const auto id = static_cast<int32_t>(uniform(0, 2500));
    const int64_t want = id >= begin && id < begin + rows ? id - begin : -1;
    EXPECT_EQ(kernels::vocab_row(id, begin, rows), want) << "id " << id << " slice [" << begin << ", +" << rows << ")";
  }
}

}  // namespace
}  // namespace moe::test
