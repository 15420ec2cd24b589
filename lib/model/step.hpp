#pragma once
// What every block of the forward pass shares during one batch: the backend, the per-step
// buffers, the batch's layout on the backend, and the phase timers.
#include <cstdint>

#include "backend/workspace.hpp"
#include "config/model_config.hpp"
#include "core/timer.hpp"
#include "model/tensor_parallel.hpp"

namespace moe {

// Workspace slots of the forward pass (the dispatcher has its own workspace).
namespace slot {
enum : std::size_t {
  hidden = 0,  // h [T, d], the residual stream
  normed,      // norm(h) [T, d]
  q,
  k,
  v,              // [T, H*hd], [T, KV*hd], [T, KV*hd]
  attn_out,       // [T, H*hd]
  attn_scratch,   // backend-defined
  mlp_in,         // [rows, mlp_in_rows(F)]
  mlp_act,        // [rows, F]
  mlp_out,        // [rows, d]
  router_logits,  // [T, E]
  topk_ids,       // [T, k]
  topk_weights,   // [T, k]
  gate_logit,     // [T]
  token_ids,      // [T]
  positions,      // [T]
  seq_offsets,    // [B + 1]
  targets,        // [T]
  lse,            // [T] double
  target_logit,   // [T]
  lm_scratch,     // backend-defined
  partial,        // [T, d] a partial sum over tp ranks
  moe_out,        // [T, d] the MoE output of the tp group's tokens (parallelism-coordinated)
  qk_sum_sq,      // [T] double: q or k rows' sums of squares over the tp group (sharded qk_norm)
  count
};
}  // namespace slot

struct Step {
  Backend& backend;
  Workspace& ws;
  const ModelConfig& config;
  PhaseTimes* times = nullptr;
  TensorParallel tp;
  int64_t heads = 0;       // this tp rank's query heads
  int64_t kv_heads = 0;    // and kv heads
  int64_t num_tokens = 0;  // T
  int64_t num_seqs = 0;    // B
  int64_t max_len = 0;
  const int32_t* token_ids = nullptr;    // backend [T]
  const int32_t* positions = nullptr;    // backend [T]
  const int64_t* seq_offsets = nullptr;  // backend [B + 1]
};

// Sums a [T, d] partial result over the tp group and adds it to h (all tp ranks get the sum).
// rw: partial, h
void add_tp_partial(Step& step, float* partial, float* h);

// The dense MLP (or shared expert) of a tp-sliced model: h += MLP(x) with the partial sums of
// the column slices reduced over tp; without tp, straight into h. The compute is timed as
// `phase`, the reduction as tp.allreduce.  r: x  rw: h
void mlp_forward_into(Step& step, const struct MlpWeights& mlp, const float* x, float* h, const char* phase);

}  // namespace moe
