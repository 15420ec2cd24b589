#pragma once
// Routing and token movement: router softmax + top-k, row gather, row scatter-add.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// Per row of logits [m, e]: kernels::softmax_topk_row (backend/elementwise.hpp), one thread per
// row (k is 1..8 and e a few hundred at most: the row's work is tiny). ids/weights: [m, k].
cudaError_t softmax_topk(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                         float* weights, cudaStream_t stream);
// out[i] = x[rows[i]], rows of width d.
cudaError_t gather_rows(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out, cudaStream_t stream);
// out[rows[i]] += scale[i] * x[i] for i < m; rows may repeat.
//
// Deterministic and race-free without atomics: one thread per column, each walking i = 0..m-1 in
// order, exactly the CPU backend's summation order for every output element. The parallelism is
// only d threads, so for large m it is latency-bound; a sort-by-destination (CSR) variant with a
// thread per (destination row, column) would keep the order and scale, at the cost of building
// the inverse index.
cudaError_t scatter_add_rows(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d, float* out,
                             cudaStream_t stream);

}  // namespace moe::cuda_kernels
