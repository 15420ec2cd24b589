#include "backend/cpu/row_invariant_gemm.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"

namespace moe::cpu {
namespace {

// A micro tile is 6 input rows x 16 output columns: 12 AVX2 accumulators, 2 weight loads and 6
// broadcasts per k. Blocks: kKc k values (a 16-column weight panel of 16 KiB stays in L1), kMc
// input rows (96 KiB packed, in L2) and up to kNc output columns per thread task (1 MiB of packed
// weights, streamed from L2/L3 once per row block; wider tasks repack the rows less often). On a
// Zen 3, moe-bench gemm: 256/96/1024 gave 159-184 GFLOP/s at moe-score's shapes (OpenBLAS sgemm
// 160-186), 256/96/256 150-174, a kKc of 128 or 384 no better.
constexpr int64_t kMr = 6, kNr = 16, kKc = 256, kMc = 96, kNc = 1024;

// The micro kernel: c[6][16] (ldc apart) = (load_c ? c : 0) + sum over p of xp[p][r] * wp[p][col],
// one fused multiply-add per (element, p), p ascending. xp holds kMr values per p, wp kNr.
using Kernel = void (*)(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, bool load_c);

__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* xp, const float* wp, float* c,
                                                     int64_t ldc, bool load_c) {
  __m256 a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
  if (load_c) {
    a00 = _mm256_loadu_ps(c), a01 = _mm256_loadu_ps(c + 8);
    a10 = _mm256_loadu_ps(c + ldc), a11 = _mm256_loadu_ps(c + ldc + 8);
    a20 = _mm256_loadu_ps(c + 2 * ldc), a21 = _mm256_loadu_ps(c + 2 * ldc + 8);
    a30 = _mm256_loadu_ps(c + 3 * ldc), a31 = _mm256_loadu_ps(c + 3 * ldc + 8);
    a40 = _mm256_loadu_ps(c + 4 * ldc), a41 = _mm256_loadu_ps(c + 4 * ldc + 8);
    a50 = _mm256_loadu_ps(c + 5 * ldc), a51 = _mm256_loadu_ps(c + 5 * ldc + 8);
  } else {
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = a50 = a51 = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p, xp += kMr, wp += kNr) {
    const __m256 w0 = _mm256_load_ps(wp), w1 = _mm256_load_ps(wp + 8);
    __m256 x = _mm256_broadcast_ss(xp);
    a00 = _mm256_fmadd_ps(x, w0, a00), a01 = _mm256_fmadd_ps(x, w1, a01);
    x = _mm256_broadcast_ss(xp + 1);
    a10 = _mm256_fmadd_ps(x, w0, a10), a11 = _mm256_fmadd_ps(x, w1, a11);
    x = _mm256_broadcast_ss(xp + 2);
    a20 = _mm256_fmadd_ps(x, w0, a20), a21 = _mm256_fmadd_ps(x, w1, a21);
    x = _mm256_broadcast_ss(xp + 3);
    a30 = _mm256_fmadd_ps(x, w0, a30), a31 = _mm256_fmadd_ps(x, w1, a31);
    x = _mm256_broadcast_ss(xp + 4);
    a40 = _mm256_fmadd_ps(x, w0, a40), a41 = _mm256_fmadd_ps(x, w1, a41);
    x = _mm256_broadcast_ss(xp + 5);
    a50 = _mm256_fmadd_ps(x, w0, a50), a51 = _mm256_fmadd_ps(x, w1, a51);
  }
  _mm256_storeu_ps(c, a00), _mm256_storeu_ps(c + 8, a01);
  _mm256_storeu_ps(c + ldc, a10), _mm256_storeu_ps(c + ldc + 8, a11);
  _mm256_storeu_ps(c + 2 * ldc, a20), _mm256_storeu_ps(c + 2 * ldc + 8, a21);
  _mm256_storeu_ps(c + 3 * ldc, a30), _mm256_storeu_ps(c + 3 * ldc + 8, a31);
  _mm256_storeu_ps(c + 4 * ldc, a40), _mm256_storeu_ps(c + 4 * ldc + 8, a41);
  _mm256_storeu_ps(c + 5 * ldc, a50), _mm256_storeu_ps(c + 5 * ldc + 8, a51);
}

// CPUs without AVX2 and FMA: the same chains in plain code (the same instructions for every row
// here too, whatever the compiler makes of them).
void kernel_generic(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, bool load_c) {
  float acc[kMr][kNr];
  for (int64_t r = 0; r < kMr; ++r)
    for (int64_t j = 0; j < kNr; ++j) acc[r][j] = load_c ? c[r * ldc + j] : 0.0f;
  for (int64_t p = 0; p < kc; ++p, xp += kMr, wp += kNr)
    for (int64_t r = 0; r < kMr; ++r)
      for (int64_t j = 0; j < kNr; ++j) acc[r][j] = std::fma(xp[r], wp[j], acc[r][j]);
  for (int64_t r = 0; r < kMr; ++r)
    for (int64_t j = 0; j < kNr; ++j) c[r * ldc + j] = acc[r][j];
}

bool has_avx2_fma() {
  return cpu_features().avx2 && cpu_features().fma;
}

// `count` rows of a matrix, k values [p0, p0 + kc) of each, as groups of kWidth rows, each group
// p-major (kc x kWidth); rows past `count` are zeros. value(r, p) is element p0 + p of row r.
template <int64_t kWidth, typename Value>
void pack_groups(int64_t count, int64_t kc, float* out, const Value& value) {
  for (int64_t g = 0; g < count; g += kWidth, out += kc * kWidth)
    for (int64_t r = 0; r < kWidth; ++r) {
      float* dst = out + r;
      if (g + r >= count)
        for (int64_t p = 0; p < kc; ++p) dst[p * kWidth] = 0.0f;
      else
        for (int64_t p = 0; p < kc; ++p) dst[p * kWidth] = value(g + r, p);
    }
}

// Rows [i0, i0 + rows) of x, rounded to bf16, in groups of kMr.
void pack_rows(const float* x, int64_t k, int64_t i0, int64_t rows, int64_t p0, int64_t kc, float* out) {
  pack_groups<kMr>(rows, kc, out,
                   [&](int64_t r, int64_t p) { return bf16_to_float(float_to_bf16(x[(i0 + r) * k + p0 + p])); });
}

// Weight rows [j0, j0 + cols) widened to f32, in panels of kNr.
void pack_weights(const WeightView& w, int64_t j0, int64_t cols, int64_t p0, int64_t kc, float* out) {
  const auto* base = static_cast<const uint16_t*>(w.data);
  pack_groups<kNr>(cols, kc, out,
                   [&](int64_t j, int64_t p) { return bf16_to_float(base[(j0 + j) * w.stride + p0 + p]); });
}

// A float buffer aligned for 32-byte loads, this thread's own (each OpenMP worker has its own).
float* scratch(std::vector<float>& v, int64_t floats) {
  v.resize(static_cast<std::size_t>(floats + 8));
  auto address = reinterpret_cast<std::uintptr_t>(v.data());
  return v.data() + ((32 - address % 32) % 32) / sizeof(float);
}

// Output columns [j0, j0 + cols) for all m rows: this is one thread's task.
void column_block(Kernel run, const float* x, int64_t m, const WeightView& w, float* y, bool accumulate, int64_t j0,
                  int64_t cols) {
  thread_local std::vector<float> wbuf, xbuf;
  const int64_t n = w.rows, k = w.cols;
  const int64_t panels = (cols + kNr - 1) / kNr;
  float* wp = scratch(wbuf, panels * kNr * kKc);
  float* xp = scratch(xbuf, kMc * kKc);
  float edge[kMr * kNr];
  for (int64_t p0 = 0; p0 < k; p0 += kKc) {
    const int64_t kc = std::min(kKc, k - p0);
    const bool load_c = accumulate || p0 > 0;
    pack_weights(w, j0, cols, p0, kc, wp);
    for (int64_t i0 = 0; i0 < m; i0 += kMc) {
      const int64_t rows = std::min(kMc, m - i0);
      pack_rows(x, k, i0, rows, p0, kc, xp);
      for (int64_t g = 0; g < panels; ++g) {
        const int64_t jj = j0 + g * kNr, nc = std::min(kNr, j0 + cols - jj);
        for (int64_t r = 0; r < rows; r += kMr) {
          const int64_t mr = std::min(kMr, rows - r);
          float* c = y + (i0 + r) * n + jj;
          if (mr == kMr && nc == kNr) {
            run(kc, xp + r * kc, wp + g * kc * kNr, c, n, load_c);
            continue;
          }
          // An edge tile goes through a full-size copy: the kernel's instructions stay the same.
          std::fill(edge, edge + kMr * kNr, 0.0f);
          for (int64_t i = 0; i < mr; ++i) std::memcpy(edge + i * kNr, c + i * n, sizeof(float) * nc);
          run(kc, xp + r * kc, wp + g * kc * kNr, edge, kNr, load_c);
          for (int64_t i = 0; i < mr; ++i) std::memcpy(c + i * n, edge + i * kNr, sizeof(float) * nc);
        }
      }
    }
  }
}

}  // namespace

void gemm_bf16_row_invariant(const float* x, int64_t m, const WeightView& w, float* y, float beta, bool generic) {
  const int64_t n = w.rows;
  if (m == 0 || n == 0) return;
  MOE_CHECK(beta == 0.0f || beta == 1.0f, "row-invariant GEMM: beta must be 0 or 1, not {}", beta);
  const bool accumulate = beta != 0.0f;
  const Kernel run = !generic && has_avx2_fma() ? kernel_avx2 : kernel_generic;
  if (w.cols == 0) {
    if (!accumulate) std::fill(y, y + m * n, 0.0f);
    return;
  }
  // Threads take column blocks of at most kNc, as many blocks per thread (an element's sum does
  // not depend on which block or thread computes it, only its row's does, and rows are never split).
  const int64_t threads = omp_get_max_threads();
  const int64_t rounds = (n + threads * kNc - 1) / (threads * kNc);
  const int64_t width = ((n + threads * rounds - 1) / (threads * rounds) + kNr - 1) / kNr * kNr;
  const int64_t blocks = (n + width - 1) / width;
#pragma omp parallel for schedule(static, 1) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b)
    column_block(run, x, m, w, y, accumulate, b * width, std::min(width, n - b * width));
}

const char* row_invariant_gemm_isa() {
  return has_avx2_fma() ? "avx2+fma" : "generic";
}

}  // namespace moe::cpu
