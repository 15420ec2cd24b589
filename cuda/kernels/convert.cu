#include "kernels/common.cuh"
#include "kernels/convert.cuh"

namespace moe::cuda_kernels {

namespace {

__global__ void widen_bf16_rows_kernel(const uint16_t* w, int64_t stride, int64_t row_begin, int64_t rows, int64_t cols,
                                       float* panel) {
  MOE_CUDA_GRID_STRIDE(idx, rows * cols) {
    const int64_t r = idx / cols;
    const int64_t c = idx - r * cols;
    panel[idx] = bf16_bits_to_float(w[(row_begin + r) * stride + c]);
  }
}

}  // namespace

cudaError_t widen_bf16_rows(const uint16_t* w, int64_t stride, int64_t row_begin, int64_t rows, int64_t cols,
                            float* panel, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  widen_bf16_rows_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(w, stride, row_begin, rows, cols, panel);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
