#pragma once
// The planners' history from the routing trace that moe-score records with `moe.trace: true`
// (docs/formats.md): per MoE layer L the rows routed to each expert in each finished global batch,
// parsed by io/trace_reader (read_routing_trace). This file keeps what placement adds: count
// matrices per layer, the checks against the model to be placed, and several files concatenated.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "moe/balance/counts.hpp"

namespace moe::balance {

struct TraceCounts {
  std::string model_checksum;
  std::map<int64_t, CountMatrix> layers;  // by the model's layer index; finished batches only
};

// One results file's trace (this process alone reads it). Errors name the file and dataset.
TraceCounts read_trace_counts(const std::string& path);

// The traces of several results files of one model, batches concatenated in file order, checked
// against the model to be placed: the same model checksum, every MoE layer present with the
// layer's expert count, no other layer.
TraceCounts read_trace_counts(const std::vector<std::string>& paths, const ModelConfig& model,
                              const std::string& model_checksum);

}  // namespace moe::balance
