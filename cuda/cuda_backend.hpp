#pragma once
// The CUDA backend: device memory from cudaMalloc, GEMMs on cuBLAS, every other op a kernel of
// kernels/ (one .cu/.cuh pair per op family, the per-element math shared with the CPU backend
// through backend/elementwise.hpp). It computes the same functions as CpuBackend, with the same
// layouts; tests/gpu/cuda_backend_test compares the two op by op.
//
// STATUS: written and compiled on a machine without a GPU. Nothing here has run on a device yet;
// treat it as unverified until tests/gpu/cuda_backend_test passes on a GPU machine.
//
// Execution model. Every op is enqueued on the backend's own (non-blocking) stream and returns
// without waiting, except where the host must see a result:
//   - copy_to_host returns with the data in host memory (the stream is synchronised);
//   - copy_to_device returns with the copy complete (the host buffer may be reused at once,
//     pinned or not);
//   - synchronize() waits for everything issued.
// All pointers an op takes are device memory, host-side metadata excepted as in backend.hpp
// (grouped_linear's offsets and weights array). In particular causal_attention's seq_offsets,
// rope's positions, embed's ids and the lm-head targets are device memory.
// The backend assumes its device is the current device of the calling thread (the constructor
// makes it current; one backend per process and thread is the intended use).
//
// Numerics. fp32 GEMMs are cublasSgemm with the default math mode (fp32 FMA, no TF32: results
// agree with OpenBLAS to fp32 rounding). GEMMs with bf16 weights (linear, the grouped expert
// GEMMs, the LM head) round the activations to bf16 (a kernel, into scratch owned by the
// backend) and run cublasGemmEx with bf16 inputs and fp32 accumulation (CUBLAS_COMPUTE_32F,
// tensor cores on sm_80/sm_90): bf16 x bf16 products are exact in fp32, so this is the CPU
// backend's bf16 GEMM function up to the order of the fp32 sums. Row statistics (norms, lm-head
// log-sum-exp) are reduced in double like on the CPU. Reductions are deterministic (fixed trees,
// no float atomics), including scatter_add_rows, which adds in the CPU's order.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace moe {

class CudaBackend final : public Backend {
 public:
  // Makes `device` current on the calling thread and creates the stream and cuBLAS handle.
  explicit CudaBackend(int device);
  // Never throws (an exception from a destructor under MPI deadlocks the other ranks); errors
  // while releasing are reported on stderr.
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  int device() const { return device_; }
  // The stream every op is enqueued on; give it to make_nccl_communicator so that collectives are
  // ordered with the ops around them.
  cudaStream_t stream() const { return stream_; }

  void copy_to_device(void* dst, const void* host_src, std::size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override;
  void copy(void* dst, const void* src, std::size_t bytes) override;
  void synchronize() override;

  void linear(const float* x, int64_t m, const WeightView& w, float* y, float beta) override;
  void grouped_linear(const float* x, const int64_t* offsets, int64_t num_groups, const WeightView* weights,
                      float* y) override;
  void add_bias(float* y, const float* bias, int64_t m, int64_t n) override;
  void add(float* y, const float* x, int64_t n) override;
  void rms_norm(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps) override;
  void row_sum_squares(const float* x, int64_t m, int64_t d, double* sum_sq) override;
  void rms_norm_scaled(const float* x, const float* w, const double* sum_sq, double count, float* y, int64_t m,
                       int64_t d, float eps) override;
  void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d, float eps) override;
  void rope(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim, float theta) override;
  void embed(const int32_t* ids, int64_t m, const WeightView& table, int64_t vocab_begin, float* out,
             bool accumulate) override;
  // 0: the attention kernel keeps its softmax state on chip (online softmax) and needs no scratch;
  // causal_attention ignores its scratch argument.
  std::size_t attention_scratch_bytes(int64_t max_len) const override;
  void causal_attention(const float* q, const float* k, const float* v, float* out, const int64_t* seq_offsets,
                        int64_t num_seqs, int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        void* scratch) override;
  void swiglu(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n) override;
  void gelu(float* x, int64_t n) override;
  void scale_rows_sigmoid(float* y, const float* logit, int64_t m, int64_t d) override;
  void softmax_topk(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                    float* weights) override;
  void gather_rows(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out) override;
  void scatter_add_rows(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d,
                        float* out) override;
  // scratch: device memory of lm_head_scratch_bytes(). With a bf16 head, h is rounded to bf16
  // once for all tiles; each row folds its vocabulary tiles in ascending order, as on the CPU.
  void lm_head_logsumexp(const float* h, int64_t m, const WeightView& head, int64_t vocab_begin, const int32_t* targets,
                         double* lse, float* target_logit, void* scratch) override;

 protected:
  void* raw_alloc(std::size_t bytes) override;
  // Never throws (called from DeviceBuffer's destructor).
  void raw_free(void* ptr) override;

 private:
  // y[m, n] (leading dimension ldy) = x[m, k] . w[n, k]^T (w's leading dimension ldw) + beta y.
  void sgemm(const float* x, int64_t m, const float* w, int64_t n, int64_t k, int64_t ldw, float* y, int64_t ldy,
             float beta);
  // y[m, n] (ldy) = bf16 x[m, k] (dense) . bf16 w[n, k]^T (ldw) + beta y, fp32 accumulation.
  void gemm_bf16(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k, int64_t ldw, float* y,
                 int64_t ldy, float beta);
  // x[0..count) rounded to bf16 in the backend's scratch, grown as needed (not counted in
  // bytes_in_use(): the backend's own working memory, like the CPU backend's panels).
  const uint16_t* rounded_bf16(const float* x, int64_t count);
  void release_resources() noexcept;

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  uint16_t* x_bf16_ = nullptr;  // rounded_bf16's scratch
  std::size_t x_bf16_count_ = 0;
};

// True when the CUDA runtime sees at least one device. Never throws: a missing or too old driver
// ("CUDA driver version is insufficient") counts as no device.
bool cuda_device_available() noexcept;

// The backend on this process's GPU: local rank (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID or
// SLURM_LOCALID, else `local_rank` when >= 0 (the caller's MPI_COMM_TYPE_SHARED rank), else 0)
// modulo the visible device count. Throws moe::Error, naming the CUDA error, when no device is
// usable.
std::unique_ptr<Backend> make_cuda_backend(int local_rank = -1);

}  // namespace moe
