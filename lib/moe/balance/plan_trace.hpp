#pragma once
// What moe-place runs: every MoE layer of a routing trace gets its own placement (PR-MoE layers
// differ in expert count). plan_trace measures a policy as the paper does (built on the first half
// of the layer's batches, evaluated on the second half; format_evaluation_table prints it);
// plan_all_batches builds the placement moe-place writes, from every batch.
#include <string>
#include <vector>

#include "moe/balance/evaluate.hpp"
#include "moe/balance/trace_reader.hpp"

namespace moe::balance {

// Layers in ascending order. A planner's error is prefixed with "layer L: ".
std::vector<PlannedLayer> plan_trace(const std::string& policy, const TraceCounts& trace, const PlanOptions& options);

// Each MoE layer's placement built on all of its batches: twice the history of the measured
// placement, so at least as well informed about the batches to come. [layer][expert] -> ranks
// (empty for dense layers), for all `num_layers` layers; a planner's error is prefixed "layer L: ".
std::vector<ExpertHolders> plan_all_batches(const std::string& policy, const TraceCounts& trace,
                                            const PlanOptions& options, int64_t num_layers);

// [layer][expert] -> ranks holding a whole replica, for all `num_layers` layers of the model
// (empty for dense layers): the input of the placement table's whole-expert constructor.
std::vector<ExpertHolders> layer_assignment(const std::vector<PlannedLayer>& planned, int64_t num_layers);

}  // namespace moe::balance
