#pragma once
// Embedding lookup over a vocabulary slice: out[i] (+)= table[ids[i] - vocab_begin], zeros (or
// nothing added) for a token outside [vocab_begin, vocab_begin + rows); table f32 or bf16.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// table: device rows of `stride` elements (f32, or bf16 bits when `bf16`), `cols` used per row.
// ids: device int32 [m]; out: device [m, cols].
cudaError_t embed(const int32_t* ids, int64_t m, const void* table, bool bf16, int64_t rows, int64_t vocab_begin,
                  int64_t cols, int64_t stride, float* out, bool accumulate, cudaStream_t stream);

}  // namespace moe::cuda_kernels
