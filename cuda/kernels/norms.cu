#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/norms.cuh"

namespace moe::cuda_kernels {

namespace {

constexpr int kNormThreads = 256;

// In place is safe: each thread reads and writes only its own elements of a row (j = tid + k *
// blockDim), and the reductions' barriers order one row's writes before the next row's reads.
// x and y are deliberately not __restrict__.
__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps) {
  __shared__ double shared[32];
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const float* xi = x + i * d;
    float* yi = y + i * d;
    double sum_sq = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) sum_sq += static_cast<double>(xi[j]) * xi[j];
    sum_sq = block_reduce(sum_sq, SumOp<double>{}, 0.0, shared);
    const float inv = kernels::rms_inv(sum_sq, static_cast<double>(d), eps);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) yi[j] = xi[j] * inv * w[j];
  }
}

__global__ void row_sum_squares_kernel(const float* x, int64_t m, int64_t d, double* sum_sq) {
  __shared__ double shared[32];
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const float* xi = x + i * d;
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += static_cast<double>(xi[j]) * xi[j];
    s = block_reduce(s, SumOp<double>{}, 0.0, shared);
    if (threadIdx.x == 0) sum_sq[i] = s;
  }
}

__global__ void rms_norm_scaled_kernel(const float* x, const float* w, const double* sum_sq, double count, float* y,
                                       int64_t m, int64_t d, float eps) {
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const float inv = kernels::rms_inv(sum_sq[i], count, eps);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) y[i * d + j] = x[i * d + j] * inv * w[j];
  }
}

__global__ void layer_norm_kernel(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d,
                                  float eps) {
  __shared__ double shared[32];
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const float* xi = x + i * d;
    float* yi = y + i * d;
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) sum += xi[j];
    const double mean = block_reduce(sum, SumOp<double>{}, 0.0, shared) / static_cast<double>(d);
    double var = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) var += (xi[j] - mean) * (xi[j] - mean);
    var = block_reduce(var, SumOp<double>{}, 0.0, shared);
    const double inv = 1.0 / sqrt(var / static_cast<double>(d) + eps);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
      yi[j] = kernels::layer_norm_apply(xi[j], mean, inv, w[j], b[j]);
  }
}

unsigned int row_blocks(int64_t m) {
  return static_cast<unsigned int>(m < kMaxBlocks ? m : kMaxBlocks);
}

}  // namespace

cudaError_t rms_norm(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps, cudaStream_t stream) {
  if (m <= 0 || d <= 0) return cudaSuccess;
  rms_norm_kernel<<<row_blocks(m), kNormThreads, 0, stream>>>(x, w, y, m, d, eps);
  return cudaGetLastError();
}

cudaError_t row_sum_squares(const float* x, int64_t m, int64_t d, double* sum_sq, cudaStream_t stream) {
  if (m <= 0) return cudaSuccess;
  row_sum_squares_kernel<<<row_blocks(m), kNormThreads, 0, stream>>>(x, m, d, sum_sq);
  return cudaGetLastError();
}

cudaError_t rms_norm_scaled(const float* x, const float* w, const double* sum_sq, double count, float* y, int64_t m,
                            int64_t d, float eps, cudaStream_t stream) {
  if (m <= 0 || d <= 0) return cudaSuccess;
  rms_norm_scaled_kernel<<<row_blocks(m), kNormThreads, 0, stream>>>(x, w, sum_sq, count, y, m, d, eps);
  return cudaGetLastError();
}

cudaError_t layer_norm(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d, float eps,
                       cudaStream_t stream) {
  if (m <= 0 || d <= 0) return cudaSuccess;
  layer_norm_kernel<<<row_blocks(m), kNormThreads, 0, stream>>>(x, w, b, y, m, d, eps);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
