#include "backend/cpu/cpu_backend.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "backend/cpu/host_memory.hpp"
#include "backend/elementwise.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

constexpr int64_t kAttentionTile = 128;  // queries per attention block
constexpr int64_t kLseChunk = 512;       // logits per log-sum-exp chunk (2 KiB: in L1)

const float* f32_row(const WeightView& w, int64_t row) {
  return static_cast<const float*>(w.data) + row * w.stride;
}
const uint16_t* bf16_row(const WeightView& w, int64_t row) {
  return static_cast<const uint16_t*>(w.data) + row * w.stride;
}

// sum_j e^(x[j] - shift) (and with kStore, x[j] replaced by its term) in a fixed order, whatever
// the alignment of x or the vector width: 16 lane sums over whole blocks of 16, added in lane
// order, then the rest. A vectorised reduction (omp simd) may peel iterations up to an aligned
// address and so sum in an order that depends on where a buffer lies: layouts would then differ
// by an ulp, and by more once activations are rounded to bf16.
template <bool kStore>
float sum_exp(float* x, int64_t n, float shift) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float e = kernels::exp_poly(x[j + l] - shift);
      if constexpr (kStore) x[j + l] = e;
      lanes[l] += e;
    }
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  for (; j < n; ++j) {
    const float e = kernels::exp_poly(x[j] - shift);
    if constexpr (kStore) x[j] = e;
    total += e;
  }
  return total;
}

// log sum_j e^(x[j]) over a row of logits, in chunks of kLseChunk: the max pass brings a chunk
// into L1 and the exp pass reads it there (one pass over the row from memory, not two). Within a
// chunk the terms (each <= 1) are summed in fp32 lanes, a few dozen per lane; across chunks in
// fp64, so a long vocabulary loses nothing.
double row_logsumexp(float* x, int64_t n) {
  double row_max = -std::numeric_limits<double>::infinity(), row_sum = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += kLseChunk) {
    float* chunk = x + c0;
    const int64_t len = std::min(kLseChunk, n - c0);
    float mx = chunk[0];
#pragma omp simd reduction(max : mx)
    for (int64_t j = 1; j < len; ++j) mx = std::max(mx, chunk[j]);
    const float sum = sum_exp<false>(chunk, len, mx);
    if (mx > row_max) {
      row_sum = row_sum * std::exp(row_max - mx) + sum;
      row_max = mx;
    } else {
      row_sum += sum * std::exp(static_cast<double>(mx) - row_max);
    }
  }
  return row_max + std::log(row_sum);
}

}  // namespace

void* CpuBackend::raw_alloc(std::size_t bytes) {
  void* ptr = cpu::alloc_host(bytes);
  if (!ptr) fail("cpu backend: out of memory allocating {} bytes", bytes);
  std::lock_guard<std::mutex> lock(sizes_mutex_);
  sizes_[ptr] = bytes;
  return ptr;
}

void CpuBackend::raw_free(void* ptr) {
  {
    std::lock_guard<std::mutex> lock(sizes_mutex_);
    const auto it = sizes_.find(ptr);
    if (it != sizes_.end()) {
      cpu::forget_bf16_weights(ptr, it->second);  // packed copies of weights in this buffer
      sizes_.erase(it);
    }
  }
  cpu::free_host(ptr);
}

bool CpuBackend::owns(const void* ptr) {
  std::lock_guard<std::mutex> lock(sizes_mutex_);
  auto it = sizes_.upper_bound(const_cast<void*>(ptr));
  if (it == sizes_.begin()) return false;
  --it;
  return static_cast<const char*>(ptr) < static_cast<const char*>(it->first) + it->second;
}

void CpuBackend::copy_to_device(void* dst, const void* host_src, std::size_t bytes) {
  cpu::forget_bf16_weights(dst, bytes);  // new contents: no packed copy of the old ones
  if (bytes) std::memcpy(dst, host_src, bytes);
}
void CpuBackend::copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
  if (bytes) std::memcpy(host_dst, src, bytes);
}
void CpuBackend::copy(void* dst, const void* src, std::size_t bytes) {
  cpu::forget_bf16_weights(dst, bytes);
  if (bytes) std::memmove(dst, src, bytes);
}

void CpuBackend::linear(const float* x, int64_t m, const WeightView& w, float* y, float beta) {
  if (m == 0 || w.rows == 0) return;
  if (sizing_pass()) {
    if (w.dtype == DType::bf16)
      cpu::prepare_bf16(m, w, owns(w.data));
    else
      cpu::prepare_f32(m, w);
    if (beta == 0.0f) std::memset(y, 0, sizeof(float) * static_cast<std::size_t>(m * w.rows));
    return;
  }
  if (w.dtype == DType::f32)
    cpu::gemm_f32(x, m, w, y, beta);
  else
    cpu::gemm_bf16(x, m, w, y, beta, owns(w.data));
}

bool CpuBackend::reads_host_weights_in_place(DType dtype) const {
  return dtype == DType::f32 || !cpu::bf16_gemm_packs_weights();
}

void CpuBackend::grouped_linear(const float* x, const int64_t* offsets, int64_t num_groups, const WeightView* weights,
                                float* y) {
  const int threads = omp_get_max_threads();
  bool split = threads > 1 && !sizing_pass() && num_groups > 1;
  for (int64_t g = 0; g < num_groups && split; ++g) split = cpu::gemm_runs_on_one_thread_in_parallel(weights[g].dtype);
  if (split) {
    // Each thread takes an equal share of the rows in group order, a group cut where a share ends,
    // and runs its pieces' GEMMs on its own (one thread each): no synchronisation inside a GEMM,
    // and each expert's weights packed once (twice for a cut one). Zen 3, 2 threads, the 8-expert
    // model of README "Speed": the experts' phase 6.68-6.71 -> 6.45-6.49 s.
    const int64_t total = offsets[num_groups] - offsets[0];
#pragma omp parallel num_threads(threads)
    {
      const int64_t t = omp_get_thread_num();
      const int64_t begin = offsets[0] + total * t / threads, end = offsets[0] + total * (t + 1) / threads;
      for (int64_t g = 0; g < num_groups; ++g) {
        const int64_t r0 = std::max(begin, offsets[g]), r1 = std::min(end, offsets[g + 1]);
        if (r1 <= r0) continue;
        const WeightView& w = weights[g];
        if (w.dtype == DType::f32)
          cpu::gemm_f32(x + r0 * w.cols, r1 - r0, w, y + r0 * w.rows, 0.0f);
        else
          cpu::gemm_bf16(x + r0 * w.cols, r1 - r0, w, y + r0 * w.rows, 0.0f, owns(w.data));
      }
    }
    return;
  }
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    // The sizing pass sends every token to the lowest expert ids: the other experts' bf16
    // weights are prepared (packed) here.
    if (rows == 0 && sizing_pass() && weights[g].dtype == DType::bf16)
      cpu::prepare_bf16(0, weights[g], owns(weights[g].data));
    if (rows == 0) continue;
    linear(x + offsets[g] * weights[g].cols, rows, weights[g], y + offsets[g] * weights[g].rows, 0.0f);
  }
}

void CpuBackend::add_bias(float* y, const float* bias, int64_t m, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * n + j] += bias[j];
}

void CpuBackend::add(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuBackend::rms_norm(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * d;
    float* yi = y + i * d;
    double sum_sq = 0.0;
    for (int64_t j = 0; j < d; ++j) sum_sq += static_cast<double>(xi[j]) * xi[j];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps));
    for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * inv * w[j];
  }
}

void CpuBackend::row_sum_squares(const float* x, int64_t m, int64_t d, double* sum_sq) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * d;
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += static_cast<double>(xi[j]) * xi[j];
    sum_sq[i] = s;
  }
}

void CpuBackend::rms_norm_scaled(const float* x, const float* w, const double* sum_sq, double count, float* y,
                                 int64_t m, int64_t d, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * d;
    float* yi = y + i * d;
    const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq[i] / count + eps));
    for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * inv * w[j];
  }
}

void CpuBackend::layer_norm(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * d;
    float* yi = y + i * d;
    double sum = 0.0;
    for (int64_t j = 0; j < d; ++j) sum += xi[j];
    const double mean = sum / static_cast<double>(d);
    double var = 0.0;
    for (int64_t j = 0; j < d; ++j) var += (xi[j] - mean) * (xi[j] - mean);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(d) + eps);
    for (int64_t j = 0; j < d; ++j) yi[j] = static_cast<float>((xi[j] - mean) * inv) * w[j] + b[j];
  }
}

void CpuBackend::rope(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim, float theta) {
  const int64_t half = head_dim / 2;
  // The frequencies once per call, the cosine and sine once per (row, pair) for all heads.
  std::vector<double> inv_freq(static_cast<std::size_t>(half));
  for (int64_t p = 0; p < half; ++p) inv_freq[p] = kernels::rope_inv_freq(p, head_dim, theta);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < half; ++p) {
      const double angle = positions[i] * inv_freq[p];
      const auto c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      for (int64_t h = 0; h < heads; ++h) kernels::rope_rotate_cs(x + (i * heads + h) * head_dim, p, half, c, s);
    }
  }
}

void CpuBackend::embed(const int32_t* ids, int64_t m, const WeightView& table, int64_t vocab_begin, float* out,
                       bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    float* dst = out + i * table.cols;
    const int64_t row = kernels::vocab_row(ids[i], vocab_begin, table.rows);
    if (row < 0) {
      if (!accumulate) std::fill(dst, dst + table.cols, 0.0f);
    } else if (table.dtype == DType::f32) {
      const float* src = f32_row(table, row);
      for (int64_t j = 0; j < table.cols; ++j) dst[j] = accumulate ? dst[j] + src[j] : src[j];
    } else {
      const uint16_t* src = bf16_row(table, row);
      for (int64_t j = 0; j < table.cols; ++j) {
        const float v = bf16_to_float(src[j]);
        dst[j] = accumulate ? dst[j] + v : v;
      }
    }
  }
}

std::size_t CpuBackend::attention_scratch_bytes(int64_t max_len) const {
  // One score block per OpenMP thread.
  return sizeof(float) * static_cast<std::size_t>(kAttentionTile) * static_cast<std::size_t>(max_len) *
         static_cast<std::size_t>(omp_get_max_threads());
}

// Per (sequence, kv head, tile of queries): the query heads that share the kv head (grouped-query
// attention) are stacked into one product, kAttentionTile / group queries of each, so that every
// product has about kAttentionTile rows whatever the grouping and the causal tiles stay short
// (little of the masked triangle is computed). scores = Q_stack K^T over the keys the tile can
// see (one sgemm), causal mask + softmax per row, out = P V (one sgemm). The (sequence, kv head,
// stack) items go to the OpenMP threads, each with its own [kAttentionTile, max_len] score block
// and single-threaded GEMMs: one parallel region per call, not several per tile (a barrier per
// small GEMM costs more than the GEMM on a busy node).
void CpuBackend::causal_attention(const float* q, const float* k, const float* v, float* out,
                                  const int64_t* seq_offsets, int64_t num_seqs, int64_t max_len, int64_t heads,
                                  int64_t kv_heads, int64_t head_dim, void* scratch) {
  const int64_t group = heads / kv_heads;
  const int64_t q_stride = heads * head_dim;
  const auto kv_stride = static_cast<int>(kv_heads * head_dim);
  const auto hd = static_cast<int>(head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  if (seq_offsets[num_seqs] == 0) return;  // no rows (a dp group without sequences): out may be null
  if (sizing_pass()) {
    std::memset(out, 0, sizeof(float) * static_cast<std::size_t>(seq_offsets[num_seqs] * q_stride));
    return;
  }
  const int64_t stack_heads = std::min(group, kAttentionTile);  // query heads per product
  const int64_t stacks = (group + stack_heads - 1) / stack_heads;
  const int64_t q_tile = kAttentionTile / stack_heads;  // queries of each head per product
  const int64_t block = kAttentionTile * max_len;
#pragma omp parallel for collapse(3) schedule(dynamic)
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t kvh = 0; kvh < kv_heads; ++kvh) {
      for (int64_t stack = 0; stack < stacks; ++stack) {
        // This worker's own stacked Q and output rows (thread_local: one pair per OpenMP thread).
        thread_local std::vector<float> q_rows, out_rows;
        q_rows.resize(static_cast<std::size_t>(kAttentionTile * head_dim));
        out_rows.resize(static_cast<std::size_t>(kAttentionTile * head_dim));
        float* scores = static_cast<float*>(scratch) + omp_get_thread_num() * block;
        const int64_t begin = seq_offsets[s];
        const int64_t len = seq_offsets[s + 1] - begin;
        const int64_t h0 = kvh * group + stack * stack_heads;
        const int64_t nh = std::min(stack_heads, (kvh + 1) * group - h0);
        const float* kh = k + begin * kv_stride + kvh * head_dim;
        const float* vh = v + begin * kv_stride + kvh * head_dim;
        for (int64_t t0 = 0; t0 < len; t0 += q_tile) {
          const int64_t rows = std::min(q_tile, len - t0);
          const int64_t keys = t0 + rows;  // the last query of the tile sees keys [0, keys)
          const int64_t m = nh * rows;     // row g * rows + i: head h0 + g, query t0 + i
          for (int64_t g = 0; g < nh; ++g)
            for (int64_t i = 0; i < rows; ++i)
              std::memcpy(q_rows.data() + (g * rows + i) * head_dim,
                          q + (begin + t0 + i) * q_stride + (h0 + g) * head_dim,
                          sizeof(float) * static_cast<std::size_t>(head_dim));
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(keys), hd, scale,
                      q_rows.data(), hd, kh, kv_stride, 0.0f, scores, static_cast<int>(keys));
          for (int64_t r = 0; r < m; ++r) {
            float* row = scores + r * keys;
            const int64_t visible = t0 + r % rows + 1;
            float max_score = row[0];
#pragma omp simd reduction(max : max_score)
            for (int64_t j = 1; j < visible; ++j) max_score = std::max(max_score, row[j]);
            const float total = sum_exp<true>(row, visible, max_score);
            const float inv = 1.0f / total;
#pragma omp simd
            for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
            for (int64_t j = visible; j < keys; ++j) row[j] = 0.0f;
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), hd, static_cast<int>(keys), 1.0f,
                      scores, static_cast<int>(keys), vh, kv_stride, 0.0f, out_rows.data(), hd);
          for (int64_t g = 0; g < nh; ++g)
            for (int64_t i = 0; i < rows; ++i)
              std::memcpy(out + (begin + t0 + i) * q_stride + (h0 + g) * head_dim,
                          out_rows.data() + (g * rows + i) * head_dim,
                          sizeof(float) * static_cast<std::size_t>(head_dim));
        }
      }
    }
  }
}

void CpuBackend::swiglu(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const float* g = gate + i * ld;
    const float* u = up + i * ld;
    float* o = out + i * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) o[j] = kernels::silu(g[j]) * u[j];
  }
}

void CpuBackend::gelu(float* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = kernels::gelu_erf(x[i]);
}

void CpuBackend::scale_rows_sigmoid(float* y, const float* logit, int64_t m, int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const float g = kernels::sigmoid(logit[i]);
    for (int64_t j = 0; j < d; ++j) y[i * d + j] *= g;
  }
}

void CpuBackend::softmax_topk(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                              float* weights) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i)
    kernels::softmax_topk_row(logits + i * e, e, k, renormalize, ids + i * k, weights + i * k);
}

void CpuBackend::gather_rows(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) std::memcpy(out + i * d, x + static_cast<int64_t>(rows[i]) * d, sizeof(float) * d);
}

void CpuBackend::scatter_add_rows(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d,
                                  float* out) {
  // Rows repeat (a token routed to k experts), so parallelise over columns: each thread owns a
  // column block of every row, which also keeps the summation order fixed (i ascending).
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t block = (d + threads - 1) / threads;
    const int64_t c0 = std::min(d, block * omp_get_thread_num());
    const int64_t c1 = std::min(d, c0 + block);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out + static_cast<int64_t>(rows[i]) * d;
      const float* src = x + i * d;
      const float s = scale[i];
      for (int64_t c = c0; c < c1; ++c) dst[c] += s * src[c];
    }
  }
}

void CpuBackend::lm_head_logsumexp(const float* h, int64_t m, const WeightView& head, int64_t vocab_begin,
                                   const int32_t* targets, double* lse, float* target_logit, void* scratch) {
  float* logits = static_cast<float*>(scratch);
  const int64_t d = head.cols;
  if (sizing_pass()) {
    // The bf16 kernels and packed weights of every vocabulary tile, for full and last row tiles.
    if (head.dtype == DType::bf16)
      for (int64_t v0 = 0; v0 < head.rows; v0 += lm_head_tile_vocab) {
        WeightView tile = head;
        tile.data =
            static_cast<const char*>(head.data) + v0 * head.stride * static_cast<int64_t>(dtype_size(head.dtype));
        tile.rows = std::min(lm_head_tile_vocab, head.rows - v0);
        for (const int64_t rows : {std::min(m, lm_head_tile_rows), m % lm_head_tile_rows})
          cpu::prepare_bf16(rows, tile, owns(tile.data));
      }
    std::fill(lse, lse + m, 0.0);
    std::fill(target_logit, target_logit + m, 0.0f);
    return;
  }
  // Each thread takes a contiguous share of every vocabulary tile (GEMM on one thread, then its
  // rows' log-sum-exp while the logits are in cache) and the shares are merged in vocabulary
  // order; with one thread (or a kernel that threads itself) the share is the whole tile.
  const int threads = std::max(1, omp_get_max_threads());
  const bool per_thread = threads > 1 && cpu::gemm_runs_on_one_thread_in_parallel(head.dtype);
  const int shares = per_thread ? threads : 1;
  thread_local std::vector<double> share_lse;
  share_lse.resize(static_cast<std::size_t>(shares * lm_head_tile_rows));
  double* const partial = share_lse.data();
  for (int64_t r0 = 0; r0 < m; r0 += lm_head_tile_rows) {
    const int64_t rows = std::min(lm_head_tile_rows, m - r0);
    for (int64_t i = 0; i < rows; ++i) {
      lse[r0 + i] = -std::numeric_limits<double>::infinity();
      target_logit[r0 + i] = -std::numeric_limits<float>::infinity();
    }
    for (int64_t v0 = 0; v0 < head.rows; v0 += lm_head_tile_vocab) {
      const int64_t cols = std::min(lm_head_tile_vocab, head.rows - v0);
      const int64_t share_cols = (cols + shares - 1) / shares;
      // One share: vocabulary [v0 + c0, v0 + c1) of this tile, its logits [rows, c1 - c0] at
      // logits + c0 * rows; partial[s * rows + i] gets row i's log-sum-exp over it.
      const auto share = [&](int64_t s, bool gemm_threads) {
        const int64_t c0 = std::min(cols, s * share_cols), c1 = std::min(cols, c0 + share_cols), n = c1 - c0;
        if (n == 0) {
          for (int64_t i = 0; i < rows; ++i) partial[s * rows + i] = -std::numeric_limits<double>::infinity();
          return;
        }
        WeightView tile = head;
        tile.data = static_cast<const char*>(head.data) +
                    (v0 + c0) * head.stride * static_cast<int64_t>(dtype_size(head.dtype));
        tile.rows = n;
        float* out = logits + c0 * rows;
        if (gemm_threads)
          linear(h + r0 * d, rows, tile, out, 0.0f);
        else if (head.dtype == DType::f32)
          cpu::gemm_f32(h + r0 * d, rows, tile, out, 0.0f);
        else
          cpu::gemm_bf16(h + r0 * d, rows, tile, out, 0.0f, owns(head.data));
#pragma omp parallel for schedule(static) if (gemm_threads)
        for (int64_t i = 0; i < rows; ++i) {
          float* li = out + i * n;
          partial[s * rows + i] = row_logsumexp(li, n);
          const int64_t local = targets[r0 + i] - vocab_begin - v0 - c0;
          if (local >= 0 && local < n) target_logit[r0 + i] = li[local];
        }
      };
      if (per_thread) {
#pragma omp parallel num_threads(shares)
        share(omp_get_thread_num(), false);
      } else {
        share(0, true);
      }
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t s = 0; s < shares; ++s) {
          double& acc = lse[r0 + i];
          const double part = partial[s * rows + i];
          const double hi = std::max(acc, part);
          if (hi == -std::numeric_limits<double>::infinity()) continue;
          acc = hi + std::log(std::exp(acc - hi) + std::exp(part - hi));
        }
    }
  }
}

}  // namespace moe
