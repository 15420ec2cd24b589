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
  active_.assign(static_cast<std::size_t>(num_experts), 0);
  leased_.assign(static_cast<std::size_t>(num_experts), 0);
  requested_.assign(static_cast<std::size_t>(num_experts), 0);
  access_.assign(static_cast<std::size_t>(num_experts), {});
}

void ExpertCacheBook::begin_step(const std::vector<int32_t>& active) {
  MOE_CHECK(
      std::is_sorted(active.begin(), active.end()) && std::adjacent_find(active.begin(), active.end()) == active.end(),
      "expert cache: a step's active experts must be ascending and distinct");
  for (int32_t e : active)
    MOE_CHECK(e >= 0 && e < static_cast<int32_t>(slot_of_.size()), "expert cache: expert {} is outside [0, {})", e,
              slot_of_.size());
  for (int32_t e : resident_)
    MOE_CHECK(!leased(e), "expert cache: expert {} is still leased when a new step starts (release it)", e);
  for (int32_t e : step_active_) {
    active_[static_cast<std::size_t>(e)] = 0;
    requested_[static_cast<std::size_t>(e)] = 0;
  }
  step_active_ = active;
  for (int32_t e : active) active_[static_cast<std::size_t>(e)] = 1;
  policy_->begin_step(active);
}

ExpertSlotAccess ExpertCacheBook::request(int32_t e) {
  MOE_CHECK(e >= 0 && e < static_cast<int32_t>(slot_of_.size()), "expert cache: expert {} is outside [0, {})", e,
            slot_of_.size());
  ExpertSlotAccess access;
  MOE_CHECK(try_request(e, false, access), "expert cache: all {} slots hold leased experts; expert {} has none",
            slots(), e);
  return access;
}

bool ExpertCacheBook::try_request(int32_t e, bool inactive_only, ExpertSlotAccess& access) {
  access = {};
  access.hit = resident(e);
  const auto free_slot = std::find(expert_in_slot_.begin(), expert_in_slot_.end(), -1);
  if (!access.hit && free_slot == expert_in_slot_.end()) {
    candidates_.clear();
    for (int32_t r : resident_)
      if (!leased(r) && !(inactive_only && active_[static_cast<std::size_t>(r)])) candidates_.push_back(r);
    if (candidates_.empty()) return false;
  }
  // From here the request happens: the policy sees it and the figures count it.
  policy_->requested(e, access.hit);
  if (access.hit) {
    ++stats_.hits;
    access.slot = slot_of(e);
    return true;
  }
  ++stats_.misses;
  stats_.bytes_loaded += expert_bytes_;
  if (free_slot != expert_in_slot_.end()) {
    access.slot = free_slot - expert_in_slot_.begin();
  } else {
    const int32_t victim = policy_->victim(candidates_);
    MOE_CHECK(std::find(candidates_.begin(), candidates_.end(), victim) != candidates_.end(),
              "expert cache: policy '{}' chose expert {}, which it may not evict", policy_->name(), victim);
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
  return true;
}

std::vector<std::pair<int32_t, ExpertSlotAccess>> ExpertCacheBook::prefetch() {
  std::vector<std::pair<int32_t, ExpertSlotAccess>> out;
  for (int32_t e : step_active_) {
    if (requested_[static_cast<std::size_t>(e)]) continue;
    ExpertSlotAccess access;
    if (!try_request(e, true, access)) break;
    requested_[static_cast<std::size_t>(e)] = 1;
    leased_[static_cast<std::size_t>(e)] = 1;
    access_[static_cast<std::size_t>(e)] = access;
    out.emplace_back(e, access);
  }
  return out;
}

ExpertSlotAccess ExpertCacheBook::acquire(int32_t e) {
  MOE_CHECK(e >= 0 && e < static_cast<int32_t>(slot_of_.size()) && active_[static_cast<std::size_t>(e)],
            "expert cache: expert {} is not active in this step", e);
  if (!requested_[static_cast<std::size_t>(e)]) {
    access_[static_cast<std::size_t>(e)] = request(e);
    requested_[static_cast<std::size_t>(e)] = 1;
  }
  leased_[static_cast<std::size_t>(e)] = 1;
  return access_[static_cast<std::size_t>(e)];
}

void ExpertCacheBook::release(int32_t e) {
  MOE_CHECK(e >= 0 && e < static_cast<int32_t>(slot_of_.size()) && leased(e), "expert cache: expert {} is not leased",
            e);
  leased_[static_cast<std::size_t>(e)] = 0;
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
