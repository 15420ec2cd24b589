#pragma once
// The dispatch plan: where each routed (token, expert) pair goes. Rows are grouped by expert, in
// token order inside an expert (a stable counting sort), so every gating policy and layout visits
// rows in the same order. Dynamic gating keeps exactly the routed rows; static gating gives each
// expert `capacity` rows: overflow rows are dropped (counted) and short experts padded.
#include <cstdint>
#include <vector>

namespace moe {

struct DispatchPlan {
  int64_t num_experts = 0;
  std::vector<int64_t> counts;          // [E] routed rows per expert, before any drop
  std::vector<int64_t> expert_offsets;  // [E + 1] row ranges of the experts in the plan
  std::vector<int64_t> kept;            // [E] routed rows placed per expert (first in its range;
                                        //     static gating's padding rows follow them)
  std::vector<int32_t> row_token;       // [rows] source token of each row (padding: token 0)
  std::vector<float> row_weight;        // [rows] gate weight of each row (padding and drops: 0)
  int64_t dropped = 0;                  // routed rows that did not fit (static gating)
  int64_t padded = 0;                   // empty rows computed to fill capacity (static gating)

  int64_t num_rows() const { return expert_offsets.empty() ? 0 : expert_offsets.back(); }

  // ids/weights: [num_tokens, k] host arrays from the router.
  void build_dynamic(const int32_t* ids, const float* weights, int64_t num_tokens, int64_t k, int64_t experts);
  void build_static(const int32_t* ids, const float* weights, int64_t num_tokens, int64_t k, int64_t experts,
                    int64_t capacity);
};

// Rows each expert gets under static gating: ceil(factor * tokens * k / experts), at least 1
// (0 for no tokens).
int64_t static_capacity(int64_t num_tokens, int64_t k, int64_t experts, double capacity_factor);

}  // namespace moe
