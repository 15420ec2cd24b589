#include "moe/cache/cache_book.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moe {

ExpertCacheBook::ExpertCacheBook(int64_t num_experts, int64_t slots, std::unique_ptr<EvictionPolicy> policy,
                                 uint64_t expert_bytes)
    : policy_(std::move(policy)), expert_bytes_(expert_bytes) {
  MOE_CHECK(num_experts > 0, "expert cache: a layer needs experts, got {}", num_experts);
  MOE_CHECK(slots >= 1 && slots <= num_experts, "expert cache: slots must be in [1, {}] (the experts), got {}",
            num_experts, slots);
  MOE_CHECK(policy_ != nullptr, "expert cache: no eviction policy");
  slot_of_.assign(static_cast<std::size_t>(num_experts), -1);
  expert_in_slot_.assign(static_cast<std::size_t>(slots), -1);
  resident_.reserve(static_cast<std::size_t>(slots));
}

void ExpertCacheBook::begin_step(const std::vector<int32_t>& active) {
  MOE_CHECK(
      std::is_sorted(active.begin(), active.end()) && std::adjacent_find(active.begin(), active.end()) == active.end(),
      "expert cache: a step's active experts must be ascending and distinct");
  for (int32_t e : active)
    MOE_CHECK(e >= 0 && e < static_cast<int32_t>(slot_of_.size()), "expert cache: expert {} is outside [0, {})", e,
              slot_of_.size());
  policy_->begin_step(active);
}

ExpertSlotAccess ExpertCacheBook::request(int32_t e) {
  MOE_CHECK(e >= 0 && e < static_cast<int32_t>(slot_of_.size()), "expert cache: expert {} is outside [0, {})", e,
            slot_of_.size());
  ExpertSlotAccess access;
  access.hit = resident(e);
  policy_->requested(e, access.hit);
  if (access.hit) {
    ++stats_.hits;
    access.slot = slot_of(e);
    return access;
  }
  ++stats_.misses;
  stats_.bytes_loaded += expert_bytes_;
  const auto free_slot = std::find(expert_in_slot_.begin(), expert_in_slot_.end(), -1);
  if (free_slot != expert_in_slot_.end()) {
    access.slot = free_slot - expert_in_slot_.begin();
  } else {
    const int32_t victim = policy_->victim(resident_);
    MOE_CHECK(resident(victim), "expert cache: policy '{}' chose expert {}, which is not resident", policy_->name(),
              victim);
    access.evicted = victim;
    access.slot = slot_of(victim);
    slot_of_[static_cast<std::size_t>(victim)] = -1;
    resident_.erase(std::find(resident_.begin(), resident_.end(), victim));
    policy_->evicted(victim);
    ++stats_.evictions;
  }
  expert_in_slot_[static_cast<std::size_t>(access.slot)] = e;
  slot_of_[static_cast<std::size_t>(e)] = access.slot;
  resident_.push_back(e);
  return access;
}

ExpertCacheStats replay_cache(const RequestSteps& steps, int64_t num_experts, int64_t slots, const std::string& policy,
                              uint64_t expert_bytes) {
  ExpertCacheBook book(num_experts, slots, make_eviction_policy(policy, num_experts, &steps), expert_bytes);
  for (const std::vector<int32_t>& active : steps) {
    book.begin_step(active);
    for (int32_t e : active) book.request(e);
  }
  return book.stats();
}

}  // namespace moe
