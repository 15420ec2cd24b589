#include <cmath>

#include "backend/elementwise.hpp"
#include "kernels/attention.cuh"
#include "kernels/common.cuh"

namespace moe::cuda_kernels {

namespace {

constexpr int kAttentionThreads = 128;  // keys per chunk; a multiple of 32

// grid: x = num_seqs * max_len (sequence s, query row t), y = heads.
// Dynamic shared memory: q row [head_dim], accumulator [head_dim], chunk probabilities [blockDim].
__global__ void causal_attention_kernel(const float* q, const float* k, const float* v, float* out,
                                        const int64_t* seq_offsets, int64_t max_len, int64_t heads, int64_t kv_heads,
                                        int64_t head_dim, float scale) {
  extern __shared__ float smem[];
  float* q_row = smem;
  float* acc = q_row + head_dim;
  float* probs = acc + head_dim;
  __shared__ float reduce_scratch[32];

  const int64_t s = blockIdx.x / max_len;
  const int64_t t = blockIdx.x % max_len;
  const int64_t h = blockIdx.y;
  const int64_t begin = seq_offsets[s];
  if (t >= seq_offsets[s + 1] - begin) return;  // uniform over the block: no barrier is skipped by part of it

  const int64_t q_stride = heads * head_dim;
  const int64_t kv_stride = kv_heads * head_dim;
  const int64_t kvh = h / (heads / kv_heads);
  const float* k_base = k + begin * kv_stride + kvh * head_dim;
  const float* v_base = v + begin * kv_stride + kvh * head_dim;
  const float* qi = q + (begin + t) * q_stride + h * head_dim;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
    q_row[c] = qi[c];
    acc[c] = 0.0f;
  }
  __syncthreads();

  float run_max = -INFINITY;  // max score seen so far
  float run_sum = 0.0f;       // sum of exp(score - run_max) so far
  for (int64_t j0 = 0; j0 <= t; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    float score = -INFINITY;
    if (j <= t) {
      const float* kj = k_base + j * kv_stride;
      float dot = 0.0f;
      for (int64_t c = 0; c < head_dim; ++c) dot += q_row[c] * kj[c];
      score = dot * scale;
    }
    // Chunk j0 always holds key j0 <= t, so new_max is finite.
    const float new_max = fmaxf(run_max, block_reduce(score, MaxOp<float>{}, -INFINITY, reduce_scratch));
    const float p = j <= t ? expf(score - new_max) : 0.0f;
    probs[threadIdx.x] = p;
    // block_reduce's barriers also publish probs[] to the whole block.
    const float chunk_sum = block_reduce(p, SumOp<float>{}, 0.0f, reduce_scratch);
    const float correction = kernels::softmax_fold(run_max, run_sum, new_max, chunk_sum);
    const int64_t count = t + 1 - j0 < blockDim.x ? t + 1 - j0 : blockDim.x;
    // Thread c owns acc[c], acc[c + blockDim], ...: no races on the accumulator.
    for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
      float a = acc[c] * correction;
      const float* vc = v_base + (j0 * kv_stride) + c;
      for (int64_t jj = 0; jj < count; ++jj) a += probs[jj] * vc[jj * kv_stride];
      acc[c] = a;
    }
    __syncthreads();  // probs[] is rewritten by the next chunk
  }
  float* oi = out + (begin + t) * q_stride + h * head_dim;
  const float inv_sum = 1.0f / run_sum;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) oi[c] = acc[c] * inv_sum;
}

}  // namespace

cudaError_t causal_attention(const float* q, const float* k, const float* v, float* out, const int64_t* seq_offsets,
                             int64_t num_seqs, int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim,
                             cudaStream_t stream) {
  if (num_seqs <= 0 || max_len <= 0 || heads <= 0 || head_dim <= 0) return cudaSuccess;
  if (kv_heads <= 0 || heads % kv_heads != 0 || num_seqs * max_len >= (int64_t{1} << 31) || heads >= 65536 ||
      head_dim > 4096)
    return cudaErrorInvalidValue;
  const float scale = kernels::attention_scale(head_dim);
  const dim3 grid(static_cast<unsigned int>(num_seqs * max_len), static_cast<unsigned int>(heads));
  const std::size_t shared_bytes = sizeof(float) * static_cast<std::size_t>(2 * head_dim + kAttentionThreads);
  causal_attention_kernel<<<grid, kAttentionThreads, shared_bytes, stream>>>(q, k, v, out, seq_offsets, max_len, heads,
                                                                             kv_heads, head_dim, scale);
  return cudaGetLastError();
}

}  // namespace moe::cuda_kernels
