#pragma once
// A GEMM whose output rows are each a function of their own input row alone: the same bits
// whatever the number of rows in the call, the row's place among them, or the number of threads.
//
// Why: OpenBLAS's sgemm computes rows in tiles of 12 (Haswell/Zen kernels) with other code for
// the edge tiles, and a row's place inside a tile changes its last bits too. An expert sees more
// rows when ranks share it (another layout), so a token's expert output moved in the last bit; in
// bf16 the next GEMM rounds its input to bf16, and a moved rounding grew to 5.7e-3 in a logprob
// (world 1 against world 2, docs/models.md). Here every output element is one chain of fused
// multiply-adds over k in ascending order, starting from 0 (or from y when beta is 1), computed by
// the same instructions for every row: rows are packed 6 at a time with zero rows filling the last
// group, and threads split the weights' rows (output columns), never the input rows.
#include <cstdint>

#include "backend/backend.hpp"

namespace moe::cpu {

// y[m, w.rows] = bf16(x)[m, w.cols] . w^T + beta * y (beta 0 or 1) for bf16 weights w (rows
// w.stride elements apart); x is rounded to bf16 first, products and sums are fp32.
// generic: the plain-code kernel even where AVX2 and FMA are present (so tests check it too).
void gemm_bf16_row_invariant(const float* x, int64_t m, const WeightView& w, float* y, float beta,
                             bool generic = false);

// The instruction set the kernel runs by default: "avx2+fma" or "generic".
const char* row_invariant_gemm_isa();

}  // namespace moe::cpu
