#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/rope.cuh"

namespace moe::cuda_kernels {

namespace {

// One thread per (row, head, pair); the pair index is fastest, so a warp touches two contiguous
// runs of a head.
__global__ void rope_kernel(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim,
                            float theta) {
  const int64_t half = head_dim / 2;
  MOE_CUDA_GRID_STRIDE(idx, m * heads * half) {
    const int64_t p = idx % half;
    const int64_t row_head = idx / half;  // i * heads + h
    const int64_t i = row_head / heads;
    const double angle = positions[i] * kernels::rope_inv_freq(p, head_dim, theta);
    kernels::rope_rotate(x + row_head * head_dim, p, half, angle);
  }
}

}  // namespace

cudaError_t rope(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim, float theta,
                 cudaStream_t stream) {
  const int64_t total = m * heads * (head_dim / 2);
  if (total <= 0) return cudaSuccess;
  rope_kernel<<<grid_for(total), kThreads, 0, stream>>>(x, positions, m, heads, head_dim, theta);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
