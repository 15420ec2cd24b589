#pragma once
// Per-element and per-row math shared by the CPU backend and the CUDA kernels, so that both
// compute the same function and the CPU tests check the logic the GPU runs.
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MOE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MOE_HOST_DEVICE inline
#endif

namespace moe::kernels {

// bf16 bits of x rounded to nearest even (NaN stays a quiet NaN): the activations' rounding at
// the input of a GEMM with bf16 weights (bf16 x bf16 products, fp32 accumulation). Same function
// as core/dtype.hpp's float_to_bf16, which host-only code uses.
MOE_HOST_DEVICE uint16_t bf16_round(float x) {
  uint32_t bits = 0;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// e^x in float without a library call or a branch, so that the CPU's loops over rows (softmax,
// log-sum-exp, SiLU) vectorize; the GPU computes the same function. x = n ln2 + r with
// |r| <= ln2 / 2 (Cody-Waite, two-part ln2), e^r by Cephes expf's degree-7 polynomial (relative
// error about 1e-7), 2^n built in the exponent bits. The magic 1.5 * 2^23 rounds x / ln2 to the
// integer n and leaves n in the low mantissa bits: no float-to-int conversion, so NaN in gives NaN
// out. Inputs are clamped to [-87, 88]: e^-87 (1.6e-38) stands for anything smaller and e^88
// (1.7e38) for anything larger, which no caller tells apart from 0 and inf (softmax terms <= 1,
// SiLU and sigmoid denominators).
MOE_HOST_DEVICE float exp_poly(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
  const float shifted = x * 1.44269504088896341f + kMagic;
  const float n = shifted - kMagic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  uint32_t bits = 0;
  std::memcpy(&bits, &shifted, sizeof(bits));
  bits = (bits - 0x4B400000u + 127u) << 23;
  float scale = 0.0f;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

MOE_HOST_DEVICE float silu(float x) {
  return x / (1.0f + exp_poly(-x));
}

MOE_HOST_DEVICE float gelu_erf(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

MOE_HOST_DEVICE float sigmoid(float x) {
  return 1.0f / (1.0f + exp_poly(-x));
}

// The row of a vocabulary slice [vocab_begin, vocab_begin + rows) that holds token `id`, or -1
// when another slice holds it (vocab-parallel embedding).
MOE_HOST_DEVICE int64_t vocab_row(int32_t id, int64_t vocab_begin, int64_t rows) {
  const int64_t r = static_cast<int64_t>(id) - vocab_begin;
  return r >= 0 && r < rows ? r : -1;
}

// Inverse frequency of the rotate-half RoPE pair i (0 <= i < head_dim / 2), computed in double
// as transformers does before casting, so long positions keep their precision.
MOE_HOST_DEVICE double rope_inv_freq(int64_t i, int64_t head_dim, double theta) {
  return 1.0 / pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
}

// Rotates the pair (x[i], x[i + half]) of one head by position * inv_freq.
// The same with the angle's cosine and sine given (one pair for every head at this position).
MOE_HOST_DEVICE void rope_rotate_cs(float* x, int64_t i, int64_t half, float c, float s) {
  const float a = x[i];
  const float b = x[i + half];
  x[i] = a * c - b * s;
  x[i + half] = b * c + a * s;
}

MOE_HOST_DEVICE void rope_rotate(float* x, int64_t i, int64_t half, double angle) {
  rope_rotate_cs(x, i, half, static_cast<float>(cos(angle)), static_cast<float>(sin(angle)));
}

// RMSNorm: the scale of a row from its sum of squares over `count` elements, in double:
// y = x * rms_inv(...) * w. (count is the row length, or the whole vector's under tp slicing.)
MOE_HOST_DEVICE float rms_inv(double sum_sq, double count, float eps) {
  return static_cast<float>(1.0 / sqrt(sum_sq / count + eps));
}

// LayerNorm of one element from its row's mean and inv = 1 / sqrt(biased variance + eps).
MOE_HOST_DEVICE float layer_norm_apply(float x, double mean, double inv, float w, float b) {
  return static_cast<float>((x - mean) * inv) * w + b;
}

// The LM head's running log-sum-exp of a row after one more vocabulary tile whose own
// log-sum-exp is `tile` (finite); `acc` starts at -inf. fp64, as the tiles' sums.
MOE_HOST_DEVICE double logsumexp_fold(double acc, double tile) {
  const double hi = fmax(acc, tile);
  return hi + log(exp(acc - hi) + exp(tile - hi));
}

// Attention's 1/sqrt(head_dim) score scale.
MOE_HOST_DEVICE float attention_scale(int64_t head_dim) {
  return 1.0f / sqrtf(static_cast<float>(head_dim));
}

// Online softmax over chunks of keys (one query row): new_max = max(run_max, the chunk's largest
// score), chunk_sum = sum over the chunk of exp(score - new_max). Updates the running max and
// sum and returns exp(old run_max - new_max), the factor that rescales the running weighted sum
// of values (0 on the first chunk, where run_max is -inf). After the last chunk the output is
// that weighted sum / run_sum.
MOE_HOST_DEVICE float softmax_fold(float& run_max, float& run_sum, float new_max, float chunk_sum) {
  const float correction = expf(run_max - new_max);
  run_sum = run_sum * correction + chunk_sum;
  run_max = new_max;
  return correction;
}

// Softmax over logits[0..e) and its k largest entries, ties broken by the lower id. Selection is
// by repeated arg-max (k is small: 1..8), so it needs no scratch. Writes ids[k], weights[k].
MOE_HOST_DEVICE void softmax_topk_row(const float* logits, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                                      float* weights) {
  float max_logit = logits[0];
  for (int64_t j = 1; j < e; ++j) max_logit = fmaxf(max_logit, logits[j]);
  float total = 0.0f;
  for (int64_t j = 0; j < e; ++j) total += expf(logits[j] - max_logit);
  float picked_total = 0.0f;
  for (int64_t slot = 0; slot < k; ++slot) {
    int32_t best = -1;
    for (int64_t j = 0; j < e; ++j) {
      bool taken = false;
      for (int64_t s = 0; s < slot; ++s) taken = taken || (ids[s] == j);
      if (taken) continue;
      if (best < 0 || logits[j] > logits[best]) best = static_cast<int32_t>(j);
    }
    ids[slot] = best;
    weights[slot] = expf(logits[best] - max_logit) / total;
    picked_total += weights[slot];
  }
  if (renormalize)
    for (int64_t slot = 0; slot < k; ++slot) weights[slot] /= picked_total;
}

}  // namespace moe::kernels
