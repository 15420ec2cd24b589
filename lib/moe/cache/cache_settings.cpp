#include "moe/cache/cache_settings.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "moe/cache/eviction.hpp"

namespace moe {

int64_t cache_slots_for(const CacheSlots& slots, int64_t num_experts) {
  if (slots.all) return num_experts;
  if (slots.count > 0) return slots.count;
  return std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(slots.percent / 100.0 * static_cast<double>(num_experts) - 1e-9)));
}

ExpertCacheSettings resolve_expert_cache(const RunConfig& config, const ModelConfig& model,
                                         const std::string& model_checksum, const std::string& input_checksum,
                                         const std::string& source) {
  const auto& key = config.moe.expert_cache;
  ExpertCacheSettings s;
  const CacheSlots slots = parse_cache_slots(key.slots, source + ": 'moe.expert_cache.slots'");
  const auto& names = eviction_policy_names();
  MOE_CHECK(std::find(names.begin(), names.end(), key.policy) != names.end(),
            "{}: 'moe.expert_cache.policy' is '{}' (valid: lifo, lru, belady)", source, key.policy);
  s.policy = key.policy;
  s.bounded = !slots.all;
  s.layer_slots.assign(static_cast<std::size_t>(model.num_layers), 0);
  for (int64_t i = 0; i < model.num_layers; ++i) {
    if (!model.is_moe_layer(i)) continue;
    const int64_t e = model.num_experts(i);
    s.layer_slots[static_cast<std::size_t>(i)] = cache_slots_for(slots, e);
    MOE_CHECK(s.layer_slots[static_cast<std::size_t>(i)] <= e,
              "{}: 'moe.expert_cache.slots' is {}, more than the {} experts of MoE layer {}", source, key.slots, e, i);
  }
  if (key.policy != "belady") return s;
  MOE_CHECK(!key.trace.empty(),
            "{}: 'moe.expert_cache.policy: belady' needs 'moe.expert_cache.trace' (a results file of an earlier run "
            "of the same input with moe.trace: true)",
            source);
  RoutingTrace trace = read_routing_trace(key.trace);
  MOE_CHECK(trace.input_checksum == input_checksum,
            "{}: 'moe.expert_cache.trace' {} traced another input (input_checksum {}, this input's {})", source,
            key.trace, trace.input_checksum, input_checksum);
  MOE_CHECK(model_checksum.empty() || trace.model_checksum == model_checksum,
            "{}: 'moe.expert_cache.trace' {} traced another model (model_checksum {}, this model's {})", source,
            key.trace, trace.model_checksum, model_checksum);
  MOE_CHECK(trace.batch_size == config.batch_size,
            "{}: 'moe.expert_cache.trace' {} was run with batch_size {}, this run has {}: its batches differ", source,
            key.trace, trace.batch_size, config.batch_size);
  MOE_CHECK(static_cast<int64_t>(trace.batch_ids.size()) == trace.num_batches,
            "{}: 'moe.expert_cache.trace' {} is unfinished ({} of {} batches)", source, key.trace,
            trace.batch_ids.size(), trace.num_batches);
  s.trace = std::move(trace);
  return s;
}

}  // namespace moe
