#include <cmath>

#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/lm_head.cuh"

namespace moe::cuda_kernels {

namespace {

constexpr int kLseThreads = 256;

__global__ void lm_head_init_kernel(double* lse, float* target_logit, int64_t rows) {
  MOE_CUDA_GRID_STRIDE(i, rows) {
    lse[i] = -INFINITY;
    target_logit[i] = -INFINITY;
  }
}

__global__ void lm_head_tile_update_kernel(const float* logits, int64_t rows, int64_t cols, int64_t tile_begin,
                                           const int32_t* targets, double* lse, float* target_logit) {
  __shared__ float shared_f[32];
  __shared__ double shared_d[32];
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const float* li = logits + i * cols;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, li[j]);
    mx = block_reduce(mx, MaxOp<float>{}, -INFINITY, shared_f);
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += exp(static_cast<double>(li[j] - mx));
    sum = block_reduce(sum, SumOp<double>{}, 0.0, shared_d);
    if (threadIdx.x == 0) {
      const double tile_lse = mx + log(sum);
      lse[i] = kernels::logsumexp_fold(lse[i], tile_lse);
      const int64_t local = targets[i] - tile_begin;
      if (local >= 0 && local < cols) target_logit[i] = li[local];
    }
  }
}

}  // namespace

cudaError_t lm_head_init(double* lse, float* target_logit, int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  lm_head_init_kernel<<<grid_for(rows), kThreads, 0, stream>>>(lse, target_logit, rows);
  return cudaGetLastError();
}

cudaError_t lm_head_tile_update(const float* logits, int64_t rows, int64_t cols, int64_t tile_begin,
                                const int32_t* targets, double* lse, float* target_logit, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const auto blocks = static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
  lm_head_tile_update_kernel<<<blocks, kLseThreads, 0, stream>>>(logits, rows, cols, tile_begin, targets, lse,
                                                                 target_logit);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
