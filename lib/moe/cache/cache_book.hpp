#pragma once
// The bookkeeping of one bounded expert cache (one MoE layer of one rank): which expert sits in
// which slot, what to evict on a miss (through an EvictionPolicy), which experts are leased (a
// leased expert is being loaded or computed and is never evicted), and the figures the run
// report shows (hits, misses, bytes loaded, seconds stalled). No weights and no I/O: the expert
// store moves the bytes, the trace replay (`moe-bench cache`) only counts.
//
// A store drives it per step: begin_step(active) when the counts exchange says which experts are
// active; prefetch() then names the loads to start at once (on the I/O thread, while the payload
// all-to-all runs); acquire(e) before computing expert e (a prefetched expert's access, or a load
// on demand once computed experts have freed a slot); release(e) after computing it.
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "moe/cache/eviction.hpp"

namespace moe {

struct ExpertCacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;
  uint64_t bytes_loaded = 0;
  double stall_seconds = 0;  // waiting for loads that had not landed when their expert was due
  double miss_rate() const {
    return hits + misses > 0 ? static_cast<double>(misses) / static_cast<double>(hits + misses) : 0.0;
  }
};

// Where a requested expert is (or goes) and what it displaced.
struct ExpertSlotAccess {
  bool hit = false;
  int64_t slot = -1;     // the slot holding the expert after the request
  int32_t evicted = -1;  // the expert whose slot was taken, -1 when a free slot was used
};

class ExpertCacheBook {
 public:
  // num_experts: the experts this cache serves (ids 0..num_experts-1); slots: 1..num_experts;
  // expert_bytes: the bytes one load moves.
  ExpertCacheBook(int64_t num_experts, int64_t slots, std::unique_ptr<EvictionPolicy> policy, uint64_t expert_bytes);

  // A step starts; `active` are its active experts in ascending id (from the counts exchange).
  void begin_step(const std::vector<int32_t>& active);
  // Expert e is requested (in the step's order): a hit, or a miss that takes a free slot or the
  // policy's victim's slot; the caller loads e into `slot` on a miss.
  ExpertSlotAccess request(int32_t e);
  void add_stall(double seconds) { stats_.stall_seconds += seconds; }

  // Requests this step's experts in order while each can get a slot without evicting another
  // expert of this step (a free slot, or a resident inactive in this step), leases them, and
  // returns their accesses (load those that are not hits). Stops at the first that cannot.
  std::vector<std::pair<int32_t, ExpertSlotAccess>> prefetch();
  // Expert e of this step is about to be computed: its prefetched access, or a request now (a
  // victim among the unleased residents); leases e. Throws when every slot is leased.
  ExpertSlotAccess acquire(int32_t e);
  // Expert e is computed: its lease ends, it may be evicted.
  void release(int32_t e);
  bool leased(int32_t e) const { return leased_[static_cast<std::size_t>(e)] != 0; }

  bool resident(int32_t e) const { return slot_of_[static_cast<std::size_t>(e)] >= 0; }
  int64_t slot_of(int32_t e) const { return slot_of_[static_cast<std::size_t>(e)]; }
  int64_t slots() const { return static_cast<int64_t>(expert_in_slot_.size()); }
  int64_t num_resident() const { return static_cast<int64_t>(resident_.size()); }
  uint64_t resident_bytes() const { return static_cast<uint64_t>(num_resident()) * expert_bytes_; }
  const ExpertCacheStats& stats() const { return stats_; }
  const EvictionPolicy& policy() const { return *policy_; }

 private:
  std::unique_ptr<EvictionPolicy> policy_;
  uint64_t expert_bytes_;
  std::vector<int64_t> slot_of_;          // [num_experts], -1: not resident
  std::vector<int32_t> expert_in_slot_;   // [slots], -1: free
  std::vector<int32_t> resident_;         // resident experts (any order)
  std::vector<int32_t> candidates_;       // scratch: the residents a victim may be chosen from
  std::vector<int32_t> step_active_;      // this step's active experts, ascending
  std::vector<char> active_;              // [num_experts] active in this step
  std::vector<char> leased_;              // [num_experts]
  std::vector<char> requested_;           // [num_experts] requested in this step
  std::vector<ExpertSlotAccess> access_;  // [num_experts] this step's access of each requested expert
  ExpertCacheStats stats_;

  // Requests e taking a victim among unleased residents (only those inactive in this step when
  // inactive_only); false when no slot can be had.
  bool try_request(int32_t e, bool inactive_only, ExpertSlotAccess& access);
};

// Replays `steps` (one layer's active experts per batch) through a cache of `slots` slots with
// the named policy (belady plans with `steps` themselves) and returns its figures.
ExpertCacheStats replay_cache(const RequestSteps& steps, int64_t num_experts, int64_t slots, const std::string& policy,
                              uint64_t expert_bytes = 0);

}  // namespace moe
