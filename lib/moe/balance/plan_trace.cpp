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

std::vector<ExpertHolders> layer_assignment(const std::vector<PlannedLayer>& planned, int64_t num_layers) {
  std::vector<ExpertHolders> out(static_cast<std::size_t>(num_layers));
  for (const PlannedLayer& p : planned) {
    MOE_CHECK(p.row.layer >= 0 && p.row.layer < num_layers, "placement of layer {}, the model has {} layers",
              p.row.layer, num_layers);
    out[static_cast<std::size_t>(p.row.layer)] = p.holders;
  }
  return out;
}

}  // namespace moe::balance
