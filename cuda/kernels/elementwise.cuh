#pragma once
// Elementwise ops: the per-element math is backend/elementwise.hpp, shared with the CPU backend.
// All pointers are device memory; each launcher returns cudaGetLastError() of its launch.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// y[m, n] += bias[n]
cudaError_t add_bias(float* y, const float* bias, int64_t m, int64_t n, cudaStream_t stream);
// y[i] += x[i]
cudaError_t add(float* y, const float* x, int64_t n, cudaStream_t stream);
// out[i, j] = silu(gate_up[i, j]) * gate_up[i, n + j]
cudaError_t swiglu(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n,
                   cudaStream_t stream);
// x = gelu_erf(x)
cudaError_t gelu(float* x, int64_t n, cudaStream_t stream);
// y[i, :] *= sigmoid(logit[i])
cudaError_t scale_rows_sigmoid(float* y, const float* logit, int64_t m, int64_t d, cudaStream_t stream);

}  // namespace moe::cuda_kernels
