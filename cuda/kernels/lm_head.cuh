#pragma once
// The LM head's running log-sum-exp: the backend makes a tile of logits [rows, cols] with a GEMM
// into scratch, then folds it into lse (double) and picks the target logit, row by row, exactly
// as the CPU backend does (tile max in float, sum of exp in double, pairwise log-add-exp).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// lse[i] = -inf, target_logit[i] = -inf for i < rows.
cudaError_t lm_head_init(double* lse, float* target_logit, int64_t rows, cudaStream_t stream);
// For each row i < rows of logits [rows, cols] (vocabulary ids tile_begin .. tile_begin + cols):
// lse[i] = log(exp(lse[i]) + sum_j exp(logits[i, j])) and target_logit[i] = logits[i, targets[i] -
// tile_begin] when that column is in the tile. One block per row.
cudaError_t lm_head_tile_update(const float* logits, int64_t rows, int64_t cols, int64_t tile_begin,
                                const int32_t* targets, double* lse, float* target_logit, cudaStream_t stream);

}  // namespace moe::cuda_kernels
