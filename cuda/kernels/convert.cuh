#pragma once
// bf16 -> f32 widening of a weight panel, so the bf16 GEMMs run as fp32 cuBLAS SGEMMs (the CPU
// backend widens panels the same way: identical inputs to the GEMM, fp32 accumulation).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// panel[r, c] = w[(row_begin + r) * stride + c] widened, for r < rows, c < cols; panel is dense
// [rows, cols]. w: device bf16 bits (uint16).
cudaError_t widen_bf16_rows(const uint16_t* w, int64_t stride, int64_t row_begin, int64_t rows, int64_t cols,
                            float* panel, cudaStream_t stream);

}  // namespace moe::cuda_kernels
