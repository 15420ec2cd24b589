#pragma once
// The run file's moe.expert_cache.* keys checked against the model and the input: slots per MoE
// layer, the eviction policy, and for `belady` the routing trace it plans with. Every refusal is
// one line naming the key and the value.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "config/run_config.hpp"
#include "io/trace_reader.hpp"

namespace moe {

struct ExpertCacheSettings {
  bool bounded = false;  // false: slots = all, every expert stays resident
  std::string policy;
  std::vector<int64_t> layer_slots;   // [num_layers] slots of each MoE layer (0 for dense layers)
  std::optional<RoutingTrace> trace;  // belady's future
};

// Slots of a layer of `num_experts` experts: all of them, a count, or ceil(percent of them).
int64_t cache_slots_for(const CacheSlots& slots, int64_t num_experts);

// Checks moe.expert_cache.* (source: the run file, for messages). input_checksum and
// model_checksum identify this run's input and model; a belady trace must come from both (an
// empty model_checksum: the caller checks the model itself, as moe-score does after loading).
ExpertCacheSettings resolve_expert_cache(const RunConfig& config, const ModelConfig& model,
                                         const std::string& model_checksum, const std::string& input_checksum,
                                         const std::string& source = "run file");

}  // namespace moe
