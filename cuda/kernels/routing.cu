#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/routing.cuh"

namespace moe::cuda_kernels {

namespace {

constexpr int kTopkThreads = 128;
constexpr int kScatterThreads = 64;  // small blocks: d / 64 blocks spread over more SMs
constexpr int kScatterBatch = 4;     // rows loaded ahead, applied in order

__global__ void softmax_topk_kernel(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize,
                                    int32_t* ids, float* weights) {
  MOE_CUDA_GRID_STRIDE(i, m) kernels::softmax_topk_row(logits + i * e, e, k, renormalize, ids + i * k, weights + i * k);
}

__global__ void gather_rows_kernel(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out) {
  MOE_CUDA_GRID_STRIDE(idx, m * d) {
    const int64_t i = idx / d;
    const int64_t c = idx - i * d;
    out[idx] = x[static_cast<int64_t>(rows[i]) * d + c];
  }
}

// Loads of a batch of rows are issued before the read-modify-writes, which stay in i order (two
// rows of a batch may be the same destination).
__global__ void scatter_add_rows_kernel(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d,
                                        float* out) {
  MOE_CUDA_GRID_STRIDE(c, d) {
    int64_t i = 0;
    for (; i + kScatterBatch <= m; i += kScatterBatch) {
      int64_t dst[kScatterBatch];
      float add[kScatterBatch];
#pragma unroll
      for (int b = 0; b < kScatterBatch; ++b) {
        dst[b] = static_cast<int64_t>(rows[i + b]) * d + c;
        add[b] = scale[i + b] * x[(i + b) * d + c];
      }
#pragma unroll
      for (int b = 0; b < kScatterBatch; ++b) out[dst[b]] += add[b];
    }
    for (; i < m; ++i) out[static_cast<int64_t>(rows[i]) * d + c] += scale[i] * x[i * d + c];
  }
}

}  // namespace

cudaError_t softmax_topk(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                         float* weights, cudaStream_t stream) {
  if (m <= 0 || k <= 0) return cudaSuccess;
  if (e <= 0 || k > e) return cudaErrorInvalidValue;
  softmax_topk_kernel<<<grid_for(m, kTopkThreads), kTopkThreads, 0, stream>>>(logits, m, e, k, renormalize, ids,
                                                                              weights);
  return cudaGetLastError();
}

cudaError_t gather_rows(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out, cudaStream_t stream) {
  if (m <= 0 || d <= 0) return cudaSuccess;
  gather_rows_kernel<<<grid_for(m * d), kThreads, 0, stream>>>(x, rows, m, d, out);
  return cudaGetLastError();
}

cudaError_t scatter_add_rows(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d, float* out,
                             cudaStream_t stream) {
  if (m <= 0 || d <= 0) return cudaSuccess;
  scatter_add_rows_kernel<<<grid_for(d, kScatterThreads), kScatterThreads, 0, stream>>>(x, rows, scale, m, d, out);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
