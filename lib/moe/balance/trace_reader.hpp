#pragma once
// The planners' history from the routing trace that moe-score records with `moe.trace: true`
// (layout defined by io/trace_writer on the cache branch, docs/formats.md there): per MoE layer L
// the dataset `trace/layer_<L>/expert_rows`, int64 [num_batches, E], the rows routed to each
// expert in each global batch; only the batches the journal `batch_done` marks finished count;
// root attributes `model_checksum` (the model that routed) and `trace_batch_size` (the mark of a
// traced file).
// TODO(after merging the cache branch): parse with io/trace_reader's read_routing_trace and keep
// only the model checks and concatenation here.
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
