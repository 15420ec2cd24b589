#pragma once
// The compute-backend interface. A backend owns its memory (alloc/free/copies), so a device
// backend (cuda/) plugs in without changing callers. Every pointer an op takes is backend memory
// unless its comment says "host"; each op's comment says what it reads (r) and writes (w).
// Activations are float32 row-major; weights are WeightViews (f32 or bf16).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.hpp"

namespace moe {

class Backend;

// Backend memory with single ownership; freed by the backend that made it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend* owner, void* data, std::size_t bytes) : owner_(owner), data_(data), bytes_(bytes) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  void reset();
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  Backend* owner_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// A row-major weight matrix [rows, cols] in backend memory; `stride` is the distance between
// rows in elements (>= cols), so a view can address a column slice of a larger matrix.
struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // --- memory -------------------------------------------------------------------------------
  DeviceBuffer alloc(std::size_t bytes);
  std::size_t bytes_in_use() const { return in_use_; }
  std::size_t peak_bytes() const { return peak_; }
  void reset_peak() { peak_ = in_use_; }
  // Whether alloc() returns host memory the program may write directly (the CPU): loaders then read
  // weights straight into a fresh buffer instead of staging them and calling copy_to_device.
  virtual bool host_addressable() const { return false; }
  // Whether the GEMMs can use weights of this dtype where they lie in host memory the backend did
  // not allocate (a mapped checkpoint, io/mapped_file.hpp), as fast as in its own buffers: the CPU,
  // except where its bf16 kernel keeps packed copies anyway (oneDNN).
  virtual bool reads_host_weights_in_place(DType /*dtype*/) const { return false; }
  virtual void copy_to_device(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
  // Waits until every op issued so far has finished (a no-op on the CPU).
  virtual void synchronize() = 0;
  // A sizing pass: while on, a backend may let the ops that carry the FLOPs (linear,
  // grouped_linear, causal_attention, lm_head_logsumexp) write zeros instead of computing, so
  // that one pass over the largest batch sizes every workspace at memory speed (the router then
  // sees equal logits and sends every token to the lowest expert ids). Results are meaningless.
  void set_sizing_pass(bool on) { sizing_pass_ = on; }
  bool sizing_pass() const { return sizing_pass_; }

  // --- dense algebra --------------------------------------------------------------------------
  // y[m, w.rows] = x[m, w.cols] . w^T + beta * y.   r: x, w (and y if beta != 0)  w: y
  virtual void linear(const float* x, int64_t m, const WeightView& w, float* y, float beta) = 0;
  // Group g multiplies rows [offsets[g], offsets[g+1]) of x by weights[g]; the MoE expert GEMM.
  // offsets (host) has num_groups + 1 entries; empty groups are skipped.
  // r: x, weights[*]  w: those rows of y
  virtual void grouped_linear(const float* x, const int64_t* offsets, int64_t num_groups, const WeightView* weights,
                              float* y) = 0;
  // y[m, n] += bias[n].   r: bias  rw: y
  virtual void add_bias(float* y, const float* bias, int64_t m, int64_t n) = 0;
  // y[i] += x[i].   r: x  rw: y
  virtual void add(float* y, const float* x, int64_t n) = 0;

  // --- normalisation and position -------------------------------------------------------------
  // y = x / sqrt(mean(x^2) + eps) * w, per row of d.   r: x, w  w: y (may alias x)
  virtual void rms_norm(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps) = 0;
  // RMSNorm of rows split over ranks (OLMoE's q/k norm under tensor slicing), in two steps with a
  // sum over the ranks between them: sum_sq[i] = sum_j x[i, j]^2 (fp64), then
  // y = x / sqrt(sum_sq / count + eps) * w with count the full row's length.
  // r: x  w: sum_sq[m]   /   r: x, w, sum_sq  w: y (may alias x)
  virtual void row_sum_squares(const float* x, int64_t m, int64_t d, double* sum_sq) = 0;
  virtual void rms_norm_scaled(const float* x, const float* w, const double* sum_sq, double count, float* y, int64_t m,
                               int64_t d, float eps) = 0;
  // y = (x - mean) / sqrt(var + eps) * w + b.   r: x, w, b  w: y (may alias x)
  virtual void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d,
                          float eps) = 0;
  // Rotate-half RoPE in place on x[m, heads * head_dim] at positions[m].   r: positions  rw: x
  virtual void rope(float* x, const int32_t* positions, int64_t m, int64_t heads, int64_t head_dim, float theta) = 0;
  // Vocabulary slice lookup: the table holds token rows [vocab_begin, vocab_begin + table.rows).
  // out[i] (+)= table[ids[i] - vocab_begin] for i < m; a token outside the slice gives zeros
  // (adds nothing with accumulate).   r: ids, table  w: out
  virtual void embed(const int32_t* ids, int64_t m, const WeightView& table, int64_t vocab_begin, float* out,
                     bool accumulate) = 0;

  // --- attention ------------------------------------------------------------------------------
  // Causal attention over packed sequences: sequence s owns rows [seq_offsets[s], seq_offsets[s+1]).
  // q [T, heads*hd], k and v [T, kv_heads*hd]; query head h reads kv head h / (heads / kv_heads).
  // scratch: attention_scratch_bytes(max_len) bytes.   r: q, k, v, seq_offsets  w: out, scratch
  virtual std::size_t attention_scratch_bytes(int64_t max_len) const = 0;
  virtual void causal_attention(const float* q, const float* k, const float* v, float* out, const int64_t* seq_offsets,
                                int64_t num_seqs, int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                void* scratch) = 0;

  // --- activations and elementwise ------------------------------------------------------------
  // out[i, j] = silu(gate[i * ld + j]) * up[i * ld + j]: rows of gate and up ld floats apart, so
  // either one [m, 2n] buffer (gate = it, up = it + n, ld = 2n) or two [m, n] ones (ld = n).
  // r: gate, up  w: out
  virtual void swiglu(const float* gate, const float* up, int64_t ld, float* out, int64_t m, int64_t n) = 0;
  // x = 0.5 x (1 + erf(x / sqrt 2)) in place.   rw: x
  virtual void gelu(float* x, int64_t n) = 0;
  // y[i, :] *= sigmoid(logit[i]).   r: logit  rw: y
  virtual void scale_rows_sigmoid(float* y, const float* logit, int64_t m, int64_t d) = 0;

  // --- routing and token movement -------------------------------------------------------------
  // Softmax over each row of logits[m, e], the k largest (ties: lower id), optionally renormalised.
  // r: logits  w: ids[m, k], weights[m, k]
  virtual void softmax_topk(const float* logits, int64_t m, int64_t e, int64_t k, bool renormalize, int32_t* ids,
                            float* weights) = 0;
  // out[i] = x[rows[i]] for i < m, rows of width d.   r: x, rows  w: out
  virtual void gather_rows(const float* x, const int32_t* rows, int64_t m, int64_t d, float* out) = 0;
  // out[rows[i]] += scale[i] * x[i] for i < m; rows may repeat (handled without races).
  // r: x, rows, scale  rw: out
  virtual void scatter_add_rows(const float* x, const int32_t* rows, const float* scale, int64_t m, int64_t d,
                                float* out) = 0;

  // --- LM head --------------------------------------------------------------------------------
  // For each row i of h[m, d] and the vocabulary slice head [v, d] (global ids vocab_begin...):
  // lse[i] = log sum_j exp(h_i . head_j) and target_logit[i] = h_i . head_{targets[i] - vocab_begin}
  // (-inf when the target is outside the slice). Logits are made in tiles of lm_head_tile_rows x
  // lm_head_tile_vocab inside scratch; a [m, v] matrix is never formed.
  // r: h, head, targets  w: lse, target_logit, scratch
  static constexpr int64_t lm_head_tile_rows = 512;  // 8 MiB of f32 logits: GEMMs at the full rate
  static constexpr int64_t lm_head_tile_vocab = 4096;
  std::size_t lm_head_scratch_bytes() const { return sizeof(float) * lm_head_tile_rows * lm_head_tile_vocab; }
  virtual void lm_head_logsumexp(const float* h, int64_t m, const WeightView& head, int64_t vocab_begin,
                                 const int32_t* targets, double* lse, float* target_logit, void* scratch) = 0;

 protected:
  virtual void* raw_alloc(std::size_t bytes) = 0;
  virtual void raw_free(void* ptr) = 0;

 private:
  friend class DeviceBuffer;
  void release(void* ptr, std::size_t bytes);
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
  bool sizing_pass_ = false;
};

// "cpu" or "cuda"; the error names the valid choices. `local_rank` (this process's rank on its
// node, -1 when unknown) picks the GPU of a cuda backend when no launcher variable names it
// (backend/factory/device_comms.hpp: node_local_rank).
std::unique_ptr<Backend> make_backend(const std::string& name, int local_rank = -1);

}  // namespace moe
