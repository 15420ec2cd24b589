#pragma once
// What every block of the forward pass shares during one batch: the backend, the per-step
// buffers, the batch's layout on the backend, and the phase timers.
#include <cstdint>

#include "backend/workspace.hpp"
#include "config/model_config.hpp"
#include "core/timer.hpp"

namespace moe {

// Workspace slots of the forward pass (the dispatcher has its own workspace).
namespace slot {
enum : std::size_t {
  hidden = 0,     // h [T, d], the residual stream
  normed,         // norm(h) [T, d]
  q, k, v,        // [T, H*hd], [T, KV*hd], [T, KV*hd]
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
  count
};
}  // namespace slot

struct Step {
  Backend& backend;
  Workspace& ws;
  const ModelConfig& config;
  PhaseTimes* times = nullptr;
  int64_t num_tokens = 0;  // T
  int64_t num_seqs = 0;    // B
  int64_t max_len = 0;
  const int32_t* token_ids = nullptr;    // backend [T]
  const int32_t* positions = nullptr;    // backend [T]
  const int64_t* seq_offsets = nullptr;  // backend [B + 1]
};

}  // namespace moe
