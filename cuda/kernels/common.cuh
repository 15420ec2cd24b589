#pragma once
// Device helpers shared by the kernel files (included by .cu files only): launch shapes, bf16
// widening and block reductions. Every reduction here is deterministic: a fixed tree over a fixed
// assignment of elements to threads, so a kernel gives the same bits run after run.
#include <cuda_runtime.h>

#include <cstdint>

namespace moe::cuda_kernels {

constexpr int kThreads = 256;          // default block size of the elementwise kernels
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

// for (idx = this thread's first index; idx < total; idx += threads in the grid), int64 indices.
#define MOE_CUDA_GRID_STRIDE(idx, total)                                                         \
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < (total); \
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Blocks for a grid-stride loop over n elements (n > 0).
inline unsigned int grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// bf16 is the high half of a float32 (core/dtype.hpp: bf16_to_float).
__device__ __forceinline__ float bf16_bits_to_float(uint16_t v) {
  return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

template <typename T>
struct SumOp {
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
template <typename T>
struct MaxOp {
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Reduces one value per thread over the block; every thread gets the result. blockDim.x is a
// multiple of 32 and at most 1024. `shared` holds 32 T. Contains __syncthreads(): every thread of
// the block must call it, and it may be called repeatedly with the same `shared`.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity, T* shared) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32;
  v = warp_reduce(v, op);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < num_warps ? shared[lane] : identity;
  return warp_reduce(v, op);
}

}  // namespace moe::cuda_kernels
