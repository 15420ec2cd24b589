// The CUDA backend (see cuda_backend.hpp). UNVERIFIED on a GPU: compiled and linked only.
#include "cuda_backend.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "check.hpp"
#include "core/error.hpp"
#include "kernels/attention.cuh"
#include "kernels/convert.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/embed.cuh"
#include "kernels/lm_head.cuh"
#include "kernels/norms.cuh"
#include "kernels/rope.cuh"
#include "kernels/routing.cuh"

namespace moe {

namespace {

// cuBLAS takes int dimensions.
int blas_int(int64_t n, const char* what) {
  MOE_CHECK(n >= 0 && n <= INT_MAX, "cuda backend: {} = {} does not fit cuBLAS's int", what, n);
  return static_cast<int>(n);
}

void check_weight(const WeightView& w, const char* op) {
  MOE_CHECK(w.dtype == DType::f32 || w.dtype == DType::bf16, "cuda backend {}: unsupported weight dtype", op);
  MOE_CHECK(w.rows >= 0 && w.cols >= 0 && w.stride >= w.cols,
            "cuda backend {}: bad weight view rows={} cols={} stride={}", op, w.rows, w.cols, w.stride);
}

bool ranges_overlap(const void* a, const void* b, std::size_t bytes) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return pa < pb + bytes && pb < pa + bytes;
}

// Reports a failure where no exception may leave (destructors, frees).
void report(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    std::fprintf(stderr, "moebatch: cuda backend: %s failed: %s: %s\n", what, cudaGetErrorName(rc),
                 cudaGetErrorString(rc));
}

// The launcher-local rank: set by the MPI launchers and by srun, readable before MPI_Init and
// without a communicator (library code does not name MPI_COMM_WORLD).
// Falls back to `fallback` (the MPI_COMM_TYPE_SHARED rank, when the caller knows it), else 0.
int local_rank_from_environment(int fallback) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (const char* value = std::getenv(name)) {
      char* end = nullptr;
      const long rank = std::strtol(value, &end, 10);
      if (end != value && *end == '\0' && rank >= 0 && rank <= INT_MAX) return static_cast<int>(rank);
    }
  }
  return fallback >= 0 ? fallback : 0;
}

}  // namespace

// --- lifetime ----------------------------------------------------------------------------------

CudaBackend::CudaBackend(int device) : device_(device) {
  try {
    MOE_CUDA_CHECK(cudaSetDevice(device_));
    MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MOE_CUBLAS_CHECK(cublasCreate(&cublas_));
    MOE_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // fp32 FMA GEMMs; no TF32 (CUBLAS_TF32_TENSOR_OP_MATH would cost ~3 decimal digits).
    MOE_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  } catch (...) {
    release_resources();
    throw;
  }
}

CudaBackend::~CudaBackend() {
  release_resources();
}

void CudaBackend::release_resources() noexcept {
  if (stream_) report(cudaStreamSynchronize(stream_), "cudaStreamSynchronize at shutdown");
  if (x_bf16_) report(cudaFree(x_bf16_), "cudaFree of the bf16 activation scratch");
  x_bf16_ = nullptr;
  x_bf16_count_ = 0;
  if (cublas_) {
    const cublasStatus_t rc = cublasDestroy(cublas_);
    if (rc != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "moebatch: cuda backend: cublasDestroy failed: %s\n", cublasGetStatusString(rc));
  }
  cublas_ = nullptr;
  if (stream_) report(cudaStreamDestroy(stream_), "cudaStreamDestroy");
  stream_ = nullptr;
}

bool cuda_device_available() noexcept {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // clear the (non-sticky) error for later callers
    return false;
  }
  return count > 0;
}

std::unique_ptr<Backend> make_cuda_backend(int local_rank) {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    fail("backend 'cuda': no usable CUDA device ({}: {}); use backend 'cpu' on machines without a GPU",
         cudaGetErrorName(rc), cudaGetErrorString(rc));
  }
  if (count == 0) fail("backend 'cuda': the CUDA runtime sees no device; use backend 'cpu'");
  return std::make_unique<CudaBackend>(local_rank_from_environment(local_rank) % count);
}

// --- memory ------------------------------------------------------------------------------------

void* CudaBackend::raw_alloc(std::size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t rc = cudaMalloc(&ptr, bytes);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // out-of-memory is not sticky; clear it
    std::size_t free_bytes = 0;
    std::size_t total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    fail(
        "cuda backend: cudaMalloc of {} bytes failed on device {} ({}: {}); {} of {} bytes free, {} held by "
        "this backend",
        bytes, device_, cudaGetErrorName(rc), cudaGetErrorString(rc), free_bytes, total_bytes, bytes_in_use());
  }
  return ptr;
}

// cudaFree waits for the device to finish work that may still use the block.
void CudaBackend::raw_free(void* ptr) {
  report(cudaFree(ptr), "cudaFree");
}

void CudaBackend::copy_to_device(void* dst, const void* host_src, std::size_t bytes) {
  if (!bytes) return;
  MOE_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyDefault, stream_));
  // A pinned source would otherwise still be read after we return; callers reuse host buffers.
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  MOE_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDefault, stream_));
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// Like memmove: overlapping ranges (undefined for cudaMemcpy) go through a stream-ordered temporary.
void CudaBackend::copy(void* dst, const void* src, std::size_t bytes) {
  if (!bytes || dst == src) return;
  if (!ranges_overlap(dst, src, bytes)) {
    MOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
    return;
  }
  void* tmp = nullptr;
  MOE_CUDA_CHECK(cudaMallocAsync(&tmp, bytes, stream_));
  MOE_CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDefault, stream_));
  MOE_CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDefault, stream_));
  MOE_CUDA_CHECK(cudaFreeAsync(tmp, stream_));
}

void CudaBackend::synchronize() {
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

const uint16_t* CudaBackend::rounded_bf16(const float* x, int64_t count) {
  const auto n = static_cast<std::size_t>(std::max<int64_t>(count, 1));
  if (n > x_bf16_count_) {
    if (x_bf16_) {
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // a queued GEMM may still read the old scratch
      MOE_CUDA_CHECK(cudaFree(x_bf16_));
      x_bf16_ = nullptr;
      x_bf16_count_ = 0;
    }
    void* ptr = nullptr;
    MOE_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(uint16_t)));
    x_bf16_ = static_cast<uint16_t*>(ptr);
    x_bf16_count_ = n;
  }
  MOE_CUDA_CHECK(cuda_kernels::round_to_bf16(x, count, x_bf16_, stream_));
  return x_bf16_;
}

// --- dense algebra -----------------------------------------------------------------------------

// Row-major y = x w^T is column-major y^T = w x^T: cuBLAS sees w as a column-major [k, n] matrix
// (leading dimension ldw), transposes it, and multiplies the column-major [k, m] view of x.
void CudaBackend::sgemm(const float* x, int64_t m, const float* w, int64_t n, int64_t k, int64_t ldw, float* y,
                        int64_t ldy, float beta) {
  const float alpha = 1.0f;
  const int kk = blas_int(k, "k (weight cols)");
  MOE_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, blas_int(n, "n (weight rows)"), blas_int(m, "m"), kk,
                               &alpha, w, blas_int(std::max<int64_t>(ldw, 1), "weight stride"), x, std::max(kk, 1),
                               &beta, y, blas_int(std::max<int64_t>(ldy, 1), "output stride")));
}

void CudaBackend::linear(const float* x, int64_t m, const WeightView& w, float* y, float beta) {
  check_weight(w, "linear");
  if (m == 0 || w.rows == 0) return;
  if (w.dtype == DType::f32) {
    sgemm(x, m, static_cast<const float*>(w.data), w.rows, w.cols, w.stride, y, w.rows, beta);
    return;
  }
  const int64_t k = w.cols;
  gemm_bf16(rounded_bf16(x, m * k), m, static_cast<const uint16_t*>(w.data), w.rows, k, w.stride, y, w.rows, beta);
}

// The same mapping as sgemm, with bf16 operands and fp32 output and accumulation.
void CudaBackend::gemm_bf16(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k, int64_t ldw,
                            float* y, int64_t ldy, float beta) {
  const float alpha = 1.0f;
  const int kk = blas_int(k, "k (weight cols)");
  MOE_CUBLAS_CHECK(cublasGemmEx(
      cublas_, CUBLAS_OP_T, CUBLAS_OP_N, blas_int(n, "n (weight rows)"), blas_int(m, "m"), kk, &alpha, w, CUDA_R_16BF,
      blas_int(std::max<int64_t>(ldw, 1), "weight stride"), x, CUDA_R_16BF, std::max(kk, 1), &beta, y, CUDA_R_32F,
      blas_int(std::max<int64_t>(ldy, 1), "output stride"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::grouped_linear(const float* x, const int64_t* offsets, int64_t num_groups, const WeightView* weights,
                                 float* y) {
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;
    MOE_CHECK(rows > 0, "cuda backend grouped_linear: offsets decrease at group {} ({} > {})", g, offsets[g],
              offsets[g + 1]);
    linear(x + offsets[g] * weights[g].cols, rows, weights[g], y + offsets[g] * weights[g].rows, 0.0f);
  }
}

void CudaBackend::add_bias(float* y, const float* bias, int64_t m, int64_t n) {
  MOE_CUDA_CHECK(cuda_kernels::add_bias(y, bias, m, n, stream_));
}

void CudaBackend::add(float* y, const float* x, int64_t n) {
  MOE_CUDA_CHECK(cuda_kernels::add(y, x, n, stream_));
}

// --- normalisation and position ----------------------------------------------------------------

void CudaBackend::rms_norm(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps) {
  MOE_CUDA_CHECK(cuda_kernels::rms_norm(x, w, y, m, d, eps, stream_));
}

void CudaBackend::row_sum_squares(const float* x, int64_t m, int64_t d, double* sum_sq) {
  MOE_CUDA_CHECK(cuda_kernels::row_sum_squares(x, m, d, sum_sq, stream_));
}

void CudaBackend::rms_norm_scaled(const float* x, const float* w, const double* sum_sq, double count, float* y,
                                  int64_t m, int64_t d, float eps) {
  MOE_CUDA_CHECK(cuda_kernels::rms_norm_scaled(x, w, sum_sq, count, y, m, d, eps, stream_));
}

void CudaBackend::layer_norm(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d,
                             float eps) {
  MOE_CUDA_CHECK(cuda_kernels::layer_norm(x, w, b, y, m, d, eps, stream_));
}

void CudaBackend::rope(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim, float theta) {
  MOE_CUDA_CHECK(cuda_kernels::rope(x, positions, m, heads, head_dim, theta, stream_));
}

void CudaBackend::embed(const int32_t* ids, int64_t m, const WeightView& table, int64_t vocab_begin, float* out,
                        bool accumulate) {
  check_weight(table, "embed");
  MOE_CUDA_CHECK(cuda_kernels::embed(ids, m, table.data, table.dtype == DType::bf16, table.rows, vocab_begin,
                                     table.cols, table.stride, out, accumulate, stream_));
}

// --- attention ---------------------------------------------------------------------------------

std::size_t CudaBackend::attention_scratch_bytes(int64_t /*max_len*/) const {
  return 0;
}

void CudaBackend::causal_attention(const float* q, const float* k, const float* v, float* out,
                                   const int64_t* seq_offsets, int64_t num_seqs, int64_t max_len, int64_t heads,
                                   int64_t kv_heads, int64_t head_dim, void* /*scratch*/) {
  MOE_CHECK(kv_heads > 0 && heads % kv_heads == 0, "cuda backend attention: heads {} not a multiple of kv_heads {}",
            heads, kv_heads);
  MOE_CHECK(num_seqs * max_len < (int64_t{1} << 31) && heads < 65536 && head_dim <= 4096,
            "cuda backend attention: num_seqs {} x max_len {}, heads {}, head_dim {} exceed the kernel's grid "
            "limits (< 2^31 rows, < 65536 heads, head_dim <= 4096)",
            num_seqs, max_len, heads, head_dim);
  MOE_CUDA_CHECK(
      cuda_kernels::causal_attention(q, k, v, out, seq_offsets, num_seqs, max_len, heads, kv_heads, head_dim, stream_));
}

// --- activations and elementwise ---------------------------------------------------------------

void CudaBackend::swiglu(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n) {
  MOE_CUDA_CHECK(cuda_kernels::swiglu(gate, up, ld, out, m, n, stream_));
}

void CudaBackend::gelu(float* x, int64_t n) {
  MOE_CUDA_CHECK(cuda_kernels::gelu(x, n, stream_));
}

void CudaBackend::scale_rows_sigmoid(float* y, const float* logit, int64_t m, int64_t d) {
  MOE_CUDA_CHECK(cuda_kernels::scale_rows_sigmoid(y, logit, m, d, stream_));
}

// --- routing and token movement ----------------------------------------------------------------

void CudaBackend::softmax_topk(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                               float* weights) {
  MOE_CHECK(m == 0 || (e > 0 && k > 0 && k <= e), "cuda backend softmax_topk: need 0 < k <= e, got k={} e={}", k, e);
  MOE_CUDA_CHECK(cuda_kernels::softmax_topk(logits, m, e, k, renormalize, ids, weights, stream_));
}

void CudaBackend::gather_rows(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out) {
  MOE_CUDA_CHECK(cuda_kernels::gather_rows(x, rows, m, d, out, stream_));
}

void CudaBackend::scatter_add_rows(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d,
                                   float* out) {
  MOE_CUDA_CHECK(cuda_kernels::scatter_add_rows(x, rows, scale, m, d, out, stream_));
}

// --- LM head -----------------------------------------------------------------------------------

void CudaBackend::lm_head_logsumexp(const float* h, int64_t m, const WeightView& head, int64_t vocab_begin,
                                    const int32_t* targets, double* lse, float* target_logit, void* scratch) {
  check_weight(head, "lm_head_logsumexp");
  if (m == 0) return;
  MOE_CUDA_CHECK(cuda_kernels::lm_head_init(lse, target_logit, m, stream_));
  float* logits = static_cast<float*>(scratch);
  const int64_t d = head.cols;
  // A bf16 head multiplies bf16 activations: h is rounded once for every tile.
  const uint16_t* h_bf16 = head.dtype == DType::bf16 ? rounded_bf16(h, m * d) : nullptr;
  const std::size_t elem = dtype_size(head.dtype);
  for (int64_t v0 = 0; v0 < head.rows; v0 += lm_head_tile_vocab) {
    const int64_t cols = std::min(lm_head_tile_vocab, head.rows - v0);
    WeightView tile = head;
    tile.data = static_cast<const char*>(head.data) + v0 * head.stride * static_cast<int64_t>(elem);
    tile.rows = cols;
    for (int64_t r0 = 0; r0 < m; r0 += lm_head_tile_rows) {
      const int64_t rows = std::min(lm_head_tile_rows, m - r0);
      if (head.dtype == DType::f32)
        sgemm(h + r0 * d, rows, static_cast<const float*>(tile.data), cols, d, head.stride, logits, cols, 0.0f);
      else
        gemm_bf16(h_bf16 + r0 * d, rows, static_cast<const uint16_t*>(tile.data), cols, d, head.stride, logits, cols,
                  0.0f);  // logits [rows, cols]
      MOE_CUDA_CHECK(cuda_kernels::lm_head_tile_update(logits, rows, cols, vocab_begin + v0, targets + r0, lse + r0,
                                                       target_logit + r0, stream_));
    }
  }
}

}  // namespace moe
