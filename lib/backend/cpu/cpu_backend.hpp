#pragma once
// The CPU backend: BLAS (OpenBLAS) for the GEMMs, OpenMP for everything row-parallel. It is the
// reference every other backend is tested against.
#include <map>
#include <mutex>

#include "backend/backend.hpp"

namespace moe {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool host_addressable() const override { return true; }
  bool reads_host_weights_in_place(DType dtype) const override;
  void copy_to_device(void* dst, const void* host_src, std::size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override;
  void copy(void* dst, const void* src, std::size_t bytes) override;
  void synchronize() override {}

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
  void lm_head_logsumexp(const float* h, int64_t m, const WeightView& head, int64_t vocab_begin, const int32_t* targets,
                         double* lse, float* target_logit, void* scratch) override;

 protected:
  void* raw_alloc(std::size_t bytes) override;
  void raw_free(void* ptr) override;

 private:
  // Whether ptr lies in a live buffer of this backend (bf16 weights there are packed once).
  bool owns(const void* ptr);
  std::mutex sizes_mutex_;
  std::map<void*, std::size_t> sizes_;  // live buffers: freeing one drops its packed bf16 weights
};

}  // namespace moe
