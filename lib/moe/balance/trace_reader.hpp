#pragma once
// Reads the routing trace that moe-score records in a results file, as the planners' history:
// group `/trace`, one dataset `/trace/layer_<L>` per MoE layer, int64 [batches, E] (rows routed to
// each expert in each global batch), attributes `layer` and `num_experts`; the file's root
// attribute `model_checksum` names the model that routed (docs/formats.md).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "moe/balance/counts.hpp"

namespace moe::balance {

struct RoutingTrace {
  std::string model_checksum;
  std::map<int64_t, CountMatrix> layers;  // by the model's layer index
};

// One results file's trace (this process alone reads it). Errors name the file and dataset.
RoutingTrace read_routing_trace(const std::string& path);

// The traces of several results files of one model, batches concatenated in file order, checked
// against the model to be placed: the same model checksum, every MoE layer present with the
// layer's expert count, no other layer, at least one batch per layer.
RoutingTrace read_routing_traces(const std::vector<std::string>& paths, const ModelConfig& model,
                                 const std::string& model_checksum);

}  // namespace moe::balance
