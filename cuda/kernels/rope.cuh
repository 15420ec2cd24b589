#pragma once
// Rotate-half RoPE, in place; the angle and the rotation are backend/elementwise.hpp's
// rope_inv_freq / rope_rotate, shared with the CPU backend (angles in double).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// x [m, heads * head_dim], positions [m] (device).
cudaError_t rope(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim, float theta,
                 cudaStream_t stream);

}  // namespace moe::cuda_kernels
