#pragma once
// What moe-place runs: every MoE layer of a routing trace gets its own placement (PR-MoE layers
// differ in expert count), built on the first half of the layer's batches and evaluated on the
// second half (evaluate.hpp); format_evaluation_table prints the result.
#include <string>
#include <vector>

#include "moe/balance/evaluate.hpp"
#include "moe/balance/trace_reader.hpp"

namespace moe::balance {

// Layers in ascending order. A planner's error is prefixed with "layer L: ".
std::vector<PlannedLayer> plan_trace(const std::string& policy, const TraceCounts& trace, const PlanOptions& options);

// [layer][expert] -> ranks holding a whole replica, for all `num_layers` layers of the model
// (empty for dense layers): the input of the placement table's whole-expert constructor.
std::vector<ExpertHolders> layer_assignment(const std::vector<PlannedLayer>& planned, int64_t num_layers);

}  // namespace moe::balance
