#include "backend/elementwise.hpp"
#include "kernels/common.cuh"
#include "kernels/elementwise.cuh"

namespace moe::cuda_kernels {

namespace {

__global__ void add_bias_kernel(float* y, const float* bias, int64_t m, int64_t n) {
  MOE_CUDA_GRID_STRIDE(idx, m * n) y[idx] += bias[idx % n];
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  MOE_CUDA_GRID_STRIDE(idx, n) y[idx] += x[idx];
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n) {
  MOE_CUDA_GRID_STRIDE(idx, m * n) {
    const int64_t i = idx / n;
    const int64_t j = idx - i * n;
    out[idx] = kernels::silu(gate[i * ld + j]) * up[i * ld + j];
  }
}

__global__ void gelu_kernel(float* x, int64_t n) {
  MOE_CUDA_GRID_STRIDE(idx, n) x[idx] = kernels::gelu_erf(x[idx]);
}

__global__ void scale_rows_sigmoid_kernel(float* y, const float* logit, int64_t m, int64_t d) {
  MOE_CUDA_GRID_STRIDE(idx, m * d) y[idx] *= kernels::sigmoid(logit[idx / d]);
}

}  // namespace

cudaError_t add_bias(float* y, const float* bias, int64_t m, int64_t n, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  add_bias_kernel<<<grid_for(m * n), kThreads, 0, stream>>>(y, bias, m, n);
  return cudaGetLastError();
}

cudaError_t add(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
  return cudaGetLastError();
}

cudaError_t swiglu(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n,
                   cudaStream_t stream) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  swiglu_kernel<<<grid_for(m * n), kThreads, 0, stream>>>(gate, up, ld, out, m, n);
  return cudaGetLastError();
}

cudaError_t gelu(float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  gelu_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n);
  return cudaGetLastError();
}

cudaError_t scale_rows_sigmoid(float* y, const float* logit, int64_t m, int64_t d, cudaStream_t stream) {
  if (m <= 0 || d <= 0) return cudaSuccess;
  scale_rows_sigmoid_kernel<<<grid_for(m * d), kThreads, 0, stream>>>(y, logit, m, d);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
