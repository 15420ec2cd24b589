#include "moe/dispatcher.hpp"

namespace moe {

namespace slot {
enum : std::size_t { rows = 0, weights, expert_rows };
}

int64_t LocalDispatcher::dispatch(int64_t /*layer*/, const DispatchPlan& plan, const float* x, int64_t d,
                                  float*& expert_rows, std::vector<int64_t>& local_offsets) {
  Backend& be = ws_.backend();
  const int64_t n = plan.num_rows();
  rows_ = ws_.get<int32_t>(slot::rows, static_cast<std::size_t>(n));
  weights_ = ws_.get<float>(slot::weights, static_cast<std::size_t>(n));
  expert_rows = ws_.get<float>(slot::expert_rows, static_cast<std::size_t>(n * d));
  be.copy_to_device(rows_, plan.row_token.data(), sizeof(int32_t) * static_cast<std::size_t>(n));
  be.copy_to_device(weights_, plan.row_weight.data(), sizeof(float) * static_cast<std::size_t>(n));
  be.gather_rows(x, rows_, n, d, expert_rows);
  const int64_t experts = plan.num_experts;
  local_offsets.resize(static_cast<std::size_t>(2 * experts + 1));
  for (int64_t e = 0; e < experts; ++e) {
    local_offsets[2 * e] = plan.expert_offsets[e];
    local_offsets[2 * e + 1] = plan.expert_offsets[e] + plan.kept[e];
  }
  local_offsets[2 * experts] = n;
  return n;
}

void LocalDispatcher::combine(int64_t /*layer*/, const DispatchPlan& plan, const float* expert_out, int64_t d,
                              float* y) {
  ws_.backend().scatter_add_rows(expert_out, rows_, weights_, plan.num_rows(), d, y);
}

}  // namespace moe
