#pragma once
// The CPU backend's GEMM kernels, chosen by the CPU's instruction-set features (cpuid), never by
// its model name, and trusted only after a self-check against a plain loop:
// - f32: oneDNN matmul (brgemm, its own choice by cpuid) when it passes its self-check, else
//   OpenBLAS. OpenBLAS also runs attention's small per-head products. Its own start-up pick can be far below the CPU
//   (Debian's 0.3.21 runs its SSE3 `Prescott` kernels on some AVX-512 Xeons), and it picks once, in its library
//   constructor, before main. choose_blas_kernels() compares that pick with the CPU's features and, when it is weaker,
//   restarts the program in place (execv of /proc/self/exe) with OPENBLAS_CORETYPE set, then removes the variable again
//   so children see the caller's environment unchanged.
// - bf16 weights: oneDNN matmul, bf16 x bf16 products with fp32 accumulation (AMX or AVX512_BF16
//   where present, oneDNN's choice by cpuid); activations are rounded to bf16 at the GEMM input
//   only. Where oneDNN has no bf16 kernel (CPUs without AVX-512), or its self-check fails, our
//   row-invariant kernel (row_invariant_gemm.hpp) runs: the same exact products (a bf16 x bf16
//   product fits in an f32), fp32 accumulation, and a row's result independent of the rows beside
//   it, so every layout gives one rank's bits (sgemm's differ in the last bit, which bf16 rounding
//   at the next GEMM input can turn into 5.7e-3 in a logprob).
#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/backend.hpp"

namespace moe::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512 = false;  // F, BW, DQ, VL and CD: what OpenBLAS's SkylakeX kernels use
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
  std::string flags;  // the flags above that this CPU has (with the OS's register support), space-separated
};
const CpuFeatures& cpu_features();

// Call first in main, before anything else runs a BLAS call (it may execv the program).
// A user's OPENBLAS_CORETYPE is respected (and reported).
void choose_blas_kernels(char** argv);

struct GemmKernels {
  std::string f32;       // e.g. "oneDNN brg:avx512_core"
  std::string openblas;  // e.g. "OpenBLAS SkylakeX (cpuid; OpenBLAS picked Prescott)": attention, fallback
  std::string bf16;      // e.g. "oneDNN brg:avx512_core_amx_bf16" or "widen to f32 + OpenBLAS sgemm"
};
// The kernels in use; the first call runs the self-checks (a few small GEMMs against a plain
// loop) and throws moe::Error when no kernel passes.
const GemmKernels& gemm_kernels();

// y[m, w.rows] = x[m, w.cols] . w^T + beta * y with f32 weights (the chosen f32 kernel).
void gemm_f32(const float* x, int64_t m, const WeightView& w, float* y, float beta);
// The same through OpenBLAS's sgemm, whatever the choice (moe-bench's baseline).
void gemm_f32_openblas(const float* x, int64_t m, const WeightView& w, float* y, float beta);
// Makes the kernels gemm_f32 needs for m rows of input and these weights without computing.
void prepare_f32(int64_t m, const WeightView& w);
// The same with bf16 weights: x rounded to bf16, bf16 x bf16 products, fp32 accumulation.
// pack: w stays unchanged until forget_bf16_weights() covers it, so a copy in oneDNN's blocked
// layout is made at the first call and used by later ones (oneDNN otherwise reorders per call).
void gemm_bf16(const float* x, int64_t m, const WeightView& w, float* y, float beta, bool pack);
// True when the chosen kernel for this dtype runs single-threaded when called inside an OpenMP
// parallel region, as checked here: OpenBLAS's sgemm and the row-invariant bf16 kernel (not oneDNN).
bool gemm_runs_on_one_thread_in_parallel(DType dtype);
// True when gemm_bf16 keeps a packed copy of each weight it is given with pack (oneDNN's kernels).
bool bf16_gemm_packs_weights();
// Prepares what gemm_bf16 needs for m rows of input and these weights without computing.
void prepare_bf16(int64_t m, const WeightView& w, bool pack);
// Drops the packed copies of weights in [begin, begin + bytes) (freed or overwritten).
void forget_bf16_weights(const void* begin, std::size_t bytes);

}  // namespace moe::cpu
