#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/embed.cuh"

namespace moe::cuda_kernels {

namespace {

template <bool kBf16>
__global__ void embed_kernel(const int32_t* ids, int64_t m, const void* table, int64_t rows, int64_t vocab_begin,
                             int64_t cols, int64_t stride, float* out, bool accumulate) {
  MOE_CUDA_GRID_STRIDE(idx, m * cols) {
    const int64_t i = idx / cols;
    const int64_t j = idx - i * cols;
    const int64_t row = kernels::vocab_row(ids[i], vocab_begin, rows);
    if (row < 0) {
      if (!accumulate) out[idx] = 0.0f;
      continue;
    }
    const int64_t src = row * stride + j;
    float v;
    if constexpr (kBf16)
      v = bf16_bits_to_float(static_cast<const uint16_t*>(table)[src]);
    else
      v = static_cast<const float*>(table)[src];
    out[idx] = accumulate ? out[idx] + v : v;
  }
}

}  // namespace

cudaError_t embed(const int32_t* ids, int64_t m, const void* table, bool bf16, int64_t rows, int64_t vocab_begin,
                  int64_t cols, int64_t stride, float* out, bool accumulate, cudaStream_t stream) {
  if (m <= 0 || cols <= 0) return cudaSuccess;
  if (bf16)
    embed_kernel<true>
        <<<grid_for(m * cols), kThreads, 0, stream>>>(ids, m, table, rows, vocab_begin, cols, stride, out, accumulate);
  else
    embed_kernel<false>
        <<<grid_for(m * cols), kThreads, 0, stream>>>(ids, m, table, rows, vocab_begin, cols, stride, out, accumulate);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
