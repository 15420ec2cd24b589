#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/convert.cuh"

namespace moe::cuda_kernels {

namespace {

__global__ void round_to_bf16_kernel(const float* x, int64_t n, uint16_t* out) {
  MOE_CUDA_GRID_STRIDE(i, n) out[i] = kernels::bf16_round(x[i]);
}

}  // namespace

cudaError_t round_to_bf16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  round_to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n, out);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
