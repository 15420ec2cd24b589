// Self-check of the float64 reference kernels on tiny cases worked out by hand.
#include "reference_kernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace {

using ref::Vec;
constexpr double kTol = 1e-12;

void expect_near(const Vec& got, const Vec& want) {
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        EXPECT_NEAR(got[i], want[i], kTol) << "index " << i;
}

TEST(ReferenceKernels, LinearIsXTimesWTransposedPlusBias) {
    const Vec x = {1, 2, /**/ -1, 0.5};          // [2, 2]
    const Vec w = {1, 0, /**/ 0, 1, /**/ 1, 1};  // [3, 2]
    expect_near(ref::linear(x, w, 3, 2), {1, 2, 3, -1, 0.5, -0.5});
    expect_near(ref::linear(x, w, 3, 2, Vec{0.5, 0, -1}), {1.5, 2, 2, -0.5, 0.5, -1.5});
    EXPECT_THROW(ref::linear(x, w, 2, 2), std::invalid_argument);
}

TEST(ReferenceKernels, RmsNorm) {
    const double inv = 1.0 / std::sqrt(12.5);  // mean(3^2, 4^2) = 12.5
    expect_near(ref::rms_norm(Vec{3, 4}, Vec{1, 2}, 0.0), {3 * inv, 8 * inv});
    const double inv_eps = 1.0 / std::sqrt(12.5 + 0.5);
    expect_near(ref::rms_norm(Vec{3, 4}, Vec{1, 1}, 0.5), {3 * inv_eps, 4 * inv_eps});
}

TEST(ReferenceKernels, LayerNormGivesZeroMeanUnitVariance) {
    const Vec y =
        ref::layer_norm(Vec{1, 2, 3, 6, /**/ -5, 0, 5, 10}, Vec{1, 1, 1, 1}, Vec{0, 0, 0, 0}, 0.0);
    for (int row = 0; row < 2; ++row) {
        double mean = 0, var = 0;
        for (int i = 0; i < 4; ++i) mean += y[row * 4 + i] / 4;
        for (int i = 0; i < 4; ++i) var += y[row * 4 + i] * y[row * 4 + i] / 4;
        EXPECT_NEAR(mean, 0.0, kTol);
        EXPECT_NEAR(var, 1.0, kTol);  // biased variance
    }
    // Weight and bias apply after normalisation: [1, 3] -> [-1, 1] -> [-2+1, 2+1].
    expect_near(ref::layer_norm(Vec{1, 3}, Vec{2, 2}, Vec{1, 1}, 0.0), {-1, 3});
}

TEST(ReferenceKernels, RopeRotatesHalvesByPositionTimesFrequency) {
    // head_dim 2: a single pair with frequency 1, so the angle is the position.
    const std::vector<std::int64_t> pos = {0, 3};
    const Vec x = {1, 0, /**/ 1, 0};
    expect_near(ref::rope(x, pos, 1, 2, 10000.0), {1, 0, std::cos(3.0), std::sin(3.0)});

    // head_dim 4, theta 100: pair (x0, x2) has frequency 1, pair (x1, x3) has 100^(-2/4) = 0.1.
    // Two heads, rotated alike.
    const std::vector<std::int64_t> p5 = {5};
    const Vec y = ref::rope(Vec{1, 2, 0, 0, /**/ 0, 0, 1, 1}, p5, 2, 4, 100.0);
    const double c5 = std::cos(5.0), s5 = std::sin(5.0), c05 = std::cos(0.5), s05 = std::sin(0.5);
    expect_near(y, {c5, 2 * c05, s5, 2 * s05, /**/ -s5, -s05, c5, c05});
}

TEST(ReferenceKernels, AttentionFirstTokenReturnsItsValue) {
    const Vec q = {0.3, -2, /**/ 1, 1}, k = {5, 1, /**/ -1, 2}, v = {7, 8, /**/ 9, 10};
    const Vec out = ref::causal_attention(q, k, v, 1, 1, 2);
    EXPECT_NEAR(out[0], 7, kTol);
    EXPECT_NEAR(out[1], 8, kTol);
}

TEST(ReferenceKernels, AttentionWeightsAndGroupedHeads) {
    // hd = 1, scale 1: at t = 1 the scores are (1*0, 1*ln3) -> weights (1/4, 3/4).
    const Vec q = {0, 1}, k = {0, std::log(3.0)}, v = {4, 8};
    expect_near(ref::causal_attention(q, k, v, 1, 1, 1), {4, 0.25 * 4 + 0.75 * 8});

    // 4 query heads on 2 kv heads: heads 0,1 read kv head 0 and heads 2,3 read kv head 1.
    // With q = 0 the weights are uniform, so the output is the mean of the visible values.
    const Vec q0(2 * 4, 0.0);
    const Vec kk(2 * 2, 1.0), vv = {1, 10, /**/ 3, 30};
    expect_near(ref::causal_attention(q0, kk, vv, 4, 2, 1), {1, 1, 10, 10, /**/ 2, 2, 20, 20});
    // Scale is 1/sqrt(hd): hd = 4, q.k = 4 ln 3 -> scaled 2 ln 3 -> weights (1/10, 9/10).
    const double l = std::log(3.0);
    const Vec q4 = {0, 0, 0, 0, /**/ 1, 1, 1, 1}, k4 = {0, 0, 0, 0, /**/ l, l, l, l};
    const Vec v4 = {0, 0, 0, 0, /**/ 10, 10, 10, 10};
    const Vec out = ref::causal_attention(q4, k4, v4, 1, 1, 4);
    EXPECT_NEAR(out[4], 9.0, kTol);
}

TEST(ReferenceKernels, Activations) {
    EXPECT_DOUBLE_EQ(ref::silu(0.0), 0.0);
    EXPECT_NEAR(ref::silu(2.0), 2.0 / (1.0 + std::exp(-2.0)), kTol);
    EXPECT_DOUBLE_EQ(ref::gelu_erf(0.0), 0.0);
    EXPECT_NEAR(ref::gelu_erf(1.0), 0.8413447460685429, kTol);  // Phi(1)
    EXPECT_NEAR(ref::gelu_erf(-1.0), -0.15865525393145707, kTol);
}

TEST(ReferenceKernels, Mlps) {
    // d = 1, ffn = 2.
    const Vec gate = {2, -1}, up = {3, 0.5}, down = {4, 1};
    const double want = 4 * ref::silu(2.0) * 3 + 1 * ref::silu(-1.0) * 0.5;
    expect_near(ref::swiglu_mlp(Vec{1}, gate, up, down, 1, 2), {want});
    expect_near(ref::gelu_mlp(Vec{1}, up, down, 1, 2), {4 * ref::gelu_erf(3) + ref::gelu_erf(0.5)});
}

TEST(ReferenceKernels, SoftmaxTopKTiesGoToLowerId) {
    const Vec logits = {1, 3, 3, 0};
    const auto r = ref::softmax_topk(logits, 2, false);
    EXPECT_EQ(r.ids, (std::vector<int>{1, 2}));
    const double z = std::exp(1.0) + 2 * std::exp(3.0) + std::exp(0.0);
    EXPECT_NEAR(r.weights[0], std::exp(3.0) / z, kTol);
    EXPECT_NEAR(r.weights[1], std::exp(3.0) / z, kTol);
    EXPECT_EQ(ref::softmax_topk(logits, 1, true).ids, (std::vector<int>{1}));
    EXPECT_EQ(ref::softmax_topk(Vec{0, 0, 0, 0}, 3, false).ids, (std::vector<int>{0, 1, 2}));

    const auto rn = ref::softmax_topk(Vec{0, std::log(3.0), -50}, 2, true);
    EXPECT_EQ(rn.ids, (std::vector<int>{1, 0}));
    expect_near(rn.weights, {0.75, 0.25});
    EXPECT_THROW(ref::softmax_topk(logits, 5, true), std::invalid_argument);
}

TEST(ReferenceKernels, LogSoftmaxAt) {
    EXPECT_NEAR(ref::log_softmax_at(Vec{0, std::log(3.0)}, 1), std::log(0.75), kTol);
    EXPECT_NEAR(ref::log_softmax_at(Vec{1000, 1000}, 0), std::log(0.5), kTol);  // no overflow
    const Vec logits = {0.5, -2, 3, 7, -1};
    double total = 0;
    for (std::size_t t = 0; t < logits.size(); ++t)
        total += std::exp(ref::log_softmax_at(logits, t));
    EXPECT_NEAR(total, 1.0, kTol);
}

}  // namespace
