#pragma once
// Eviction policies of the bounded expert cache, as pure logic (no weights, no I/O): the store
// and the trace replay (`moe-bench cache`) drive them through ExpertCacheBook.
//
// The request order they see: steps (global batches) in order, and inside a step the step's
// active experts in ascending id, the order MoeLayer computes them. One cache serves one MoE
// layer of one rank.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moe {

// The experts one layer's cache is asked for: active[s] is step s's active experts, ascending.
using RequestSteps = std::vector<std::vector<int32_t>>;

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual const char* name() const = 0;
  // A new step starts; `active` are its active experts (ascending), requested in that order.
  virtual void begin_step(const std::vector<int32_t>& active) = 0;
  // Expert e is requested: resident already (hit) or about to be loaded (miss).
  virtual void requested(int32_t e, bool hit) = 0;
  // The resident expert to evict (from `resident`, never empty) so that the current request can
  // be loaded.
  virtual int32_t victim(const std::vector<int32_t>& resident) const = 0;
  // Expert e left the cache.
  virtual void evicted(int32_t e) = 0;
};

// "lifo", "lru" or "belady"; belady needs the requests it will see (`future`, e.g. from a
// trace of an earlier run of the same input). Unknown names and a belady without a future throw
// moe::Error naming the valid choices.
std::unique_ptr<EvictionPolicy> make_eviction_policy(const std::string& name, int64_t num_experts,
                                                     const RequestSteps* future = nullptr);

// The policy names make_eviction_policy accepts, in the order tables list them.
const std::vector<std::string>& eviction_policy_names();

}  // namespace moe
