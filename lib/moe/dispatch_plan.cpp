#include "moe/dispatch_plan.hpp"

#include <algorithm>
#include <cmath>

namespace moe {

namespace {

void count_rows(DispatchPlan& plan, const int32_t* ids, int64_t n, int64_t experts) {
  plan.num_experts = experts;
  plan.counts.assign(static_cast<std::size_t>(experts), 0);
  for (int64_t i = 0; i < n; ++i) ++plan.counts[static_cast<std::size_t>(ids[i])];
  plan.dropped = 0;
  plan.padded = 0;
}

// Places row i (token i / k) of expert ids[i] at the next free slot of that expert, up to `limit`
// rows per expert; `next` holds each expert's next slot.
void place_rows(DispatchPlan& plan, const int32_t* ids, const float* weights, int64_t n, int64_t k,
                std::vector<int64_t>& next, int64_t limit) {
  for (int64_t i = 0; i < n; ++i) {
    const auto e = static_cast<std::size_t>(ids[i]);
    if (next[e] - plan.expert_offsets[e] >= limit) {
      ++plan.dropped;
      continue;
    }
    const int64_t row = next[e]++;
    plan.row_token[static_cast<std::size_t>(row)] = static_cast<int32_t>(i / k);
    plan.row_weight[static_cast<std::size_t>(row)] = weights[i];
  }
}

}  // namespace

void DispatchPlan::build_dynamic(const int32_t* ids, const float* weights, int64_t num_tokens, int64_t k,
                                 int64_t experts) {
  const int64_t n = num_tokens * k;
  count_rows(*this, ids, n, experts);
  expert_offsets.resize(static_cast<std::size_t>(experts + 1));
  expert_offsets[0] = 0;
  for (int64_t e = 0; e < experts; ++e) expert_offsets[e + 1] = expert_offsets[e] + counts[e];
  row_token.resize(static_cast<std::size_t>(n));
  row_weight.resize(static_cast<std::size_t>(n));
  thread_local std::vector<int64_t> next;
  next.assign(expert_offsets.begin(), expert_offsets.end() - 1);
  place_rows(*this, ids, weights, n, k, next, n);
  kept = counts;
}

void DispatchPlan::build_static(const int32_t* ids, const float* weights, int64_t num_tokens, int64_t k,
                                int64_t experts, int64_t capacity) {
  const int64_t n = num_tokens * k;
  count_rows(*this, ids, n, experts);
  expert_offsets.resize(static_cast<std::size_t>(experts + 1));
  for (int64_t e = 0; e <= experts; ++e) expert_offsets[e] = e * capacity;
  // Padding rows point at token 0 with weight 0: computed (the cost static gating pays) but they
  // add exactly zero in the combine.
  row_token.assign(static_cast<std::size_t>(experts * capacity), 0);
  row_weight.assign(static_cast<std::size_t>(experts * capacity), 0.0f);
  thread_local std::vector<int64_t> next;
  next.assign(expert_offsets.begin(), expert_offsets.end() - 1);
  place_rows(*this, ids, weights, n, k, next, capacity);
  kept.resize(static_cast<std::size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) {
    kept[e] = std::min(capacity, counts[e]);
    padded += capacity - kept[e];
  }
}

int64_t static_capacity(int64_t num_tokens, int64_t k, int64_t experts, double capacity_factor) {
  if (num_tokens == 0) return 0;  // an empty batch (a rank without work) computes nothing
  const double rows = capacity_factor * static_cast<double>(num_tokens * k) / static_cast<double>(experts);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(rows)));
}

}  // namespace moe
