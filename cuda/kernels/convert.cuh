#pragma once
// f32 -> bf16 rounding of activations at the input of a GEMM with bf16 weights: the GEMM then
// multiplies bf16 x bf16 with fp32 accumulation (cublasGemmEx), the function the CPU backend's
// bf16 GEMM computes too (backend/elementwise.hpp: bf16_round).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// out[i] = bf16 bits of x[i] rounded to nearest even, for i < n (device memory).
cudaError_t round_to_bf16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream);

}  // namespace moe::cuda_kernels
