#pragma once
// Causal attention over packed sequences, with grouped KV heads.
//
// seq_offsets is DEVICE memory (int64 [num_seqs + 1]), like every pointer of the Backend ops: the
// CPU backend reads it in place, so callers already keep it in backend memory.
//
// A straightforward kernel, written for correctness first: one block per (sequence, query row,
// head). It streams the keys in chunks of blockDim with an online softmax (running max and sum,
// the output accumulator rescaled per chunk), so it needs no scratch in global memory and no
// bound on the sequence length. Work per block is O(t * head_dim); K/V rows are re-read by every
// query row of a sequence (served mostly from L2). A flash-attention kernel (a tile of query rows
// per block, K/V tiles in shared memory, tensor cores) is the obvious next step for speed.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// Requires: heads % kv_heads == 0, num_seqs * max_len < 2^31, heads < 65536, head_dim <= 4096.
cudaError_t causal_attention(const float* q, const float* k, const float* v, float* out, const int64_t* seq_offsets,
                             int64_t num_seqs, int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim,
                             cudaStream_t stream);

}  // namespace moe::cuda_kernels
