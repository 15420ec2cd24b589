#include "moe/balance/plan_trace.hpp"

#include "core/error.hpp"

namespace moe::balance {

std::vector<PlannedLayer> plan_trace(const std::string& policy, const TraceCounts& trace, const PlanOptions& options) {
  std::vector<PlannedLayer> out;
  for (const auto& [layer, counts] : trace.layers) {
    try {
      out.push_back(plan_and_evaluate(layer, policy, counts, options));
    } catch (const Error& e) {
      fail("layer {}: {}", layer, e.what());
    }
  }
  return out;
}

}  // namespace moe::balance
