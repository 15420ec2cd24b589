#pragma once
// Embedding lookup: out[i] (+)= table[ids[i]], table f32 or bf16 with a row stride.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// table: device rows of `stride` elements (f32, or bf16 bits when `bf16`), `cols` used per row.
// ids: device int32 [m]; out: device [m, cols].
cudaError_t embed(const int32_t* ids, int64_t m, const void* table, bool bf16, int64_t cols, int64_t stride,
                  float* out, bool accumulate, cudaStream_t stream);

}  // namespace moe::cuda_kernels
