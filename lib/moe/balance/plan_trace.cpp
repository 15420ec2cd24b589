#include "moe/balance/plan_trace.hpp"

#include "core/error.hpp"

namespace moe::balance {
namespace {

// fn(layer, counts) for every layer of the trace, its errors prefixed with the layer.
template <typename Fn>
void for_each_layer(const TraceCounts& trace, Fn&& fn) {
  for (const auto& [layer, counts] : trace.layers) {
    try {
      fn(layer, counts);
    } catch (const Error& e) {
      fail("layer {}: {}", layer, e.what());
    }
  }
}

}  // namespace

std::vector<PlannedLayer> plan_trace(const std::string& policy, const TraceCounts& trace, const PlanOptions& options) {
  std::vector<PlannedLayer> out;
  for_each_layer(trace, [&](int64_t layer, const CountMatrix& counts) {
    out.push_back(plan_and_evaluate(layer, policy, counts, options));
  });
  return out;
}

std::vector<ExpertHolders> plan_all_batches(const std::string& policy, const TraceCounts& trace,
                                            const PlanOptions& options, int64_t num_layers) {
  std::vector<ExpertHolders> out(static_cast<std::size_t>(num_layers));
  for_each_layer(trace, [&](int64_t layer, const CountMatrix& counts) {
    MOE_CHECK(layer >= 0 && layer < num_layers, "the model has {} layers", num_layers);
    out[static_cast<std::size_t>(layer)] = plan_layer(policy, counts, options);
  });
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
