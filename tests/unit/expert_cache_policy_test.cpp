// The expert cache's eviction policies and bookkeeping (lib/moe/cache/). Belady's miss count is
// checked against a brute-force optimum (every eviction choice, by dynamic programming over the
// resident set) on fresh random request streams; lifo and lru against hand-worked streams; the
// bookkeeping's slots, bytes and refusals directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "moe/cache/cache_book.hpp"
#include "moe/cache/cache_settings.hpp"
#include "moe/cache/eviction.hpp"

namespace moe::test {
namespace {

// The fewest misses any demand-paging cache of `slots` experts can have on the flattened request
// stream (step by step, ascending id), found by trying every victim at every full miss.
int64_t brute_force_min_misses(const RequestSteps& steps, int slots) {
  std::vector<int32_t> flat;
  for (const auto& s : steps) flat.insert(flat.end(), s.begin(), s.end());
  std::map<std::pair<std::size_t, unsigned>, int64_t> memo;
  auto best = [&](auto&& self, std::size_t pos, unsigned resident) -> int64_t {
    if (pos == flat.size()) return 0;
    const auto key = std::make_pair(pos, resident);
    if (auto it = memo.find(key); it != memo.end()) return it->second;
    const unsigned bit = 1u << flat[pos];
    int64_t result = 0;
    if (resident & bit) {
      result = self(self, pos + 1, resident);
    } else if (__builtin_popcount(resident) < slots) {
      result = 1 + self(self, pos + 1, resident | bit);
    } else {
      result = INT64_MAX;
      for (unsigned v = resident; v != 0; v &= v - 1) {
        const unsigned victim = v & (~v + 1);
        result = std::min(result, 1 + self(self, pos + 1, (resident & ~victim) | bit));
      }
    }
    memo[key] = result;
    return result;
  };
  return best(best, 0, 0u);
}

RequestSteps random_steps(std::mt19937& rng, int experts, int num_steps) {
  RequestSteps steps;
  std::bernoulli_distribution on(0.45);
  for (int s = 0; s < num_steps; ++s) {
    std::vector<int32_t> active;
    for (int e = 0; e < experts; ++e)
      if (on(rng)) active.push_back(e);
    steps.push_back(active);
  }
  return steps;
}

TEST(ExpertCache, BeladyEqualsBruteForceOptimum) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    const int experts = std::uniform_int_distribution<int>(1, 6)(rng);
    const int num_steps = std::uniform_int_distribution<int>(1, 7)(rng);
    const RequestSteps steps = random_steps(rng, experts, num_steps);
    for (int slots = 1; slots <= experts; ++slots) {
      const int64_t optimum = brute_force_min_misses(steps, slots);
      EXPECT_EQ(replay_cache(steps, experts, slots, "belady").misses, optimum)
          << "experts " << experts << " steps " << num_steps << " slots " << slots;
      // No policy beats the optimum.
      EXPECT_GE(replay_cache(steps, experts, slots, "lifo").misses, optimum);
      EXPECT_GE(replay_cache(steps, experts, slots, "lru").misses, optimum);
    }
  }
}

TEST(ExpertCache, EveryPolicyMissesOnlyFirstUsesWhenEverythingFits) {
  std::mt19937 rng(std::random_device{}());
  const RequestSteps steps = random_steps(rng, 8, 20);
  int64_t distinct = 0;
  for (int e = 0; e < 8; ++e)
    distinct += std::any_of(steps.begin(), steps.end(),
                            [&](const auto& s) { return std::find(s.begin(), s.end(), e) != s.end(); });
  for (const std::string& policy : eviction_policy_names()) {
    const ExpertCacheStats st = replay_cache(steps, 8, 8, policy, 100);
    EXPECT_EQ(st.misses, distinct) << policy;
    EXPECT_EQ(st.evictions, 0) << policy;
    EXPECT_EQ(st.bytes_loaded, static_cast<uint64_t>(100 * distinct)) << policy;
  }
}

// Two slots, experts 0..3. Worked by hand:
//   step {0,1}: 0 miss, 1 miss                                  -> resident {0,1}
//   step {1,2}: 1 hit; 2 miss, full: 0 is inactive in this step -> lifo evicts 0 -> {1,2}
//                                    lru evicts 0 (least recent) -> {1,2}
//   step {0,3}: 0 miss: both 1, 2 inactive; lifo: 2 loaded last -> {1,0}
//                                          lru: 1 used before 2 -> {2,0}
//               3 miss: all active are 0; inactive: lifo evicts 1 -> {0,3}
//                                    lru: 2 (used at step 2), 0 just now -> evicts 2 -> {0,3}
//   step {1}:   lifo: 1 miss, nothing inactive is... 0 and 3 both inactive, 3 loaded last -> {0,1}
//               lru: 1 miss, evicts 0 (older than 3) -> {3,1}
//   step {0}:   lifo: hit. lru: miss.
TEST(ExpertCache, LifoAndLruOnAHandWorkedStream) {
  const RequestSteps steps = {{0, 1}, {1, 2}, {0, 3}, {1}, {0}};
  const ExpertCacheStats lifo = replay_cache(steps, 4, 2, "lifo");
  EXPECT_EQ(lifo.misses, 6);
  EXPECT_EQ(lifo.hits, 2);
  const ExpertCacheStats lru = replay_cache(steps, 4, 2, "lru");
  EXPECT_EQ(lru.misses, 7);
  EXPECT_EQ(lru.hits, 1);
}

TEST(ExpertCache, LifoEvictsTheLastLoadedWhenEveryResidentIsActive) {
  // One slot too few for the step: the last loaded (already computed) expert goes.
  ExpertCacheBook book(4, 2, make_eviction_policy("lifo", 4), 1);
  book.begin_step({0, 1, 2});
  EXPECT_EQ(book.request(0).evicted, -1);
  EXPECT_EQ(book.request(1).evicted, -1);
  const ExpertSlotAccess a = book.request(2);
  EXPECT_FALSE(a.hit);
  EXPECT_EQ(a.evicted, 1);
  EXPECT_EQ(a.slot, 1);
  EXPECT_TRUE(book.resident(0));
  EXPECT_EQ(book.slot_of(2), 1);
  EXPECT_EQ(book.resident_bytes(), 2u);
}

TEST(ExpertCache, SlotsStayConsistent) {
  std::mt19937 rng(std::random_device{}());
  const RequestSteps steps = random_steps(rng, 7, 40);
  for (const std::string& policy : eviction_policy_names()) {
    ExpertCacheBook book(7, 3, make_eviction_policy(policy, 7, &steps), 10);
    std::vector<int32_t> in_slot(3, -1);
    for (const auto& active : steps) {
      book.begin_step(active);
      for (int32_t e : active) {
        const int32_t before = in_slot[static_cast<std::size_t>(std::max<int64_t>(0, book.slot_of(e)))];
        const ExpertSlotAccess a = book.request(e);
        ASSERT_GE(a.slot, 0);
        ASSERT_LT(a.slot, 3);
        if (a.hit) {
          EXPECT_EQ(before, e);
        } else {
          EXPECT_EQ(a.evicted, in_slot[static_cast<std::size_t>(a.slot)]) << policy;
        }
        in_slot[static_cast<std::size_t>(a.slot)] = e;
        EXPECT_EQ(book.slot_of(e), a.slot);
      }
    }
    const ExpertCacheStats& st = book.stats();
    EXPECT_EQ(st.bytes_loaded, static_cast<uint64_t>(st.misses * 10));
    EXPECT_EQ(st.evictions, st.misses - 3);
  }
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ExpertCache, RefusesBadSettingsWithOneLine) {
  const std::string zero = error_of([] { ExpertCacheBook(8, 0, make_eviction_policy("lru", 8), 1); });
  EXPECT_NE(zero.find("slots must be in [1, 8]"), std::string::npos) << zero;
  const std::string many = error_of([] { ExpertCacheBook(8, 9, make_eviction_policy("lru", 8), 1); });
  EXPECT_NE(many.find("got 9"), std::string::npos) << many;
  const std::string unknown = error_of([] { make_eviction_policy("fifo", 8); });
  EXPECT_NE(unknown.find("unknown policy 'fifo' (valid: lifo, lru, belady)"), std::string::npos) << unknown;
  const std::string no_trace = error_of([] { make_eviction_policy("belady", 8); });
  EXPECT_NE(no_trace.find("needs a routing trace"), std::string::npos) << no_trace;
  for (const std::string& m : {zero, many, unknown, no_trace}) EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  // Belady refuses to serve requests other than the ones it planned with.
  const RequestSteps planned = {{0, 1}, {2}};
  auto policy = make_eviction_policy("belady", 4, &planned);
  policy->begin_step({0, 1});
  const std::string other = error_of([&] { policy->begin_step({3}); });
  EXPECT_NE(other.find("differs from the trace"), std::string::npos) << other;
}

// Drives a book the way a store will (begin_step, prefetch at the counts exchange, acquire and
// release around each expert's compute) and checks the lease invariant against its own record
// of slot contents: an expert's weights stay in its slot from acquire to release.
struct StoreDriver {
  int64_t demand_loads = 0;
  int64_t prefetched_loads = 0;
  void run(ExpertCacheBook& book, const RequestSteps& steps, int64_t slots) {
    std::vector<int32_t> in_slot(static_cast<std::size_t>(slots), -1);
    auto place = [&](int32_t e, const ExpertSlotAccess& a) {
      ASSERT_GE(a.slot, 0);
      ASSERT_LT(a.slot, slots);
      if (a.hit) {
        EXPECT_EQ(in_slot[static_cast<std::size_t>(a.slot)], e);
      } else {
        EXPECT_EQ(in_slot[static_cast<std::size_t>(a.slot)], a.evicted);
        if (a.evicted >= 0) {
          EXPECT_FALSE(book.leased(a.evicted)) << "evicted a leased expert";
        }
        in_slot[static_cast<std::size_t>(a.slot)] = e;
      }
    };
    for (const auto& active : steps) {
      book.begin_step(active);
      const std::set<int32_t> this_step(active.begin(), active.end());
      for (const auto& [e, a] : book.prefetch()) {
        if (a.evicted >= 0) {
          EXPECT_EQ(this_step.count(a.evicted), 0u) << "prefetch evicted an expert of this step";
        }
        prefetched_loads += a.hit ? 0 : 1;
        place(e, a);
      }
      for (int32_t e : active) {
        const bool was_leased = book.leased(e);
        const ExpertSlotAccess a = book.acquire(e);
        if (!was_leased) {
          demand_loads += a.hit ? 0 : 1;
          place(e, a);
        }
        EXPECT_EQ(in_slot[static_cast<std::size_t>(book.slot_of(e))], e) << "expert " << e << " lost its slot";
        book.release(e);
      }
    }
  }
};

TEST(ExpertCache, LeasesKeepPrefetchedExpertsUntilComputed) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 50; ++trial) {
    const RequestSteps steps = random_steps(rng, 8, 30);
    for (int64_t slots = 1; slots <= 8; ++slots)
      for (const std::string& policy : eviction_policy_names()) {
        ExpertCacheBook book(8, slots, make_eviction_policy(policy, 8, &steps), 7);
        StoreDriver driver;
        driver.run(book, steps, slots);
        const ExpertCacheStats& st = book.stats();
        EXPECT_EQ(st.misses, driver.demand_loads + driver.prefetched_loads);
        EXPECT_EQ(st.bytes_loaded, static_cast<uint64_t>(7 * st.misses));
        EXPECT_GE(st.misses, replay_cache(steps, 8, slots, "belady").misses) << policy << " beat the optimum";
      }
  }
}

TEST(ExpertCache, PrefetchCoversAStepThatFitsAndMatchesTheReplay) {
  // When every step's active experts fit, prefetch loads them all at the counts exchange; lifo
  // (which evicts inactive experts first anyway) then misses exactly as the plain replay.
  std::mt19937 rng(std::random_device{}());
  RequestSteps steps;
  std::uniform_int_distribution<int32_t> pick(0, 11);
  for (int s = 0; s < 60; ++s) {
    std::set<int32_t> a;
    while (a.size() < 3) a.insert(pick(rng));
    steps.emplace_back(a.begin(), a.end());
  }
  for (int64_t slots = 3; slots <= 12; ++slots) {
    ExpertCacheBook book(12, slots, make_eviction_policy("lifo", 12), 1);
    StoreDriver driver;
    driver.run(book, steps, slots);
    EXPECT_EQ(driver.demand_loads, 0) << slots;
    EXPECT_EQ(book.stats().misses, replay_cache(steps, 12, slots, "lifo").misses) << slots;
  }
}

TEST(ExpertCache, LeasesAreEnforced) {
  ExpertCacheBook book(4, 1, make_eviction_policy("lru", 4), 1);
  book.begin_step({0, 1});
  const auto pre = book.prefetch();
  ASSERT_EQ(pre.size(), 1u);  // expert 1 has no slot without evicting expert 0 of this step
  EXPECT_EQ(pre[0].first, 0);
  EXPECT_TRUE(book.leased(0));
  const std::string full = error_of([&] { book.acquire(1); });
  EXPECT_NE(full.find("all 1 slots hold leased experts"), std::string::npos) << full;
  book.release(0);
  EXPECT_EQ(book.acquire(1).evicted, 0);
  const std::string early = error_of([&] { book.begin_step({2}); });
  EXPECT_NE(early.find("still leased"), std::string::npos) << early;
  book.release(1);
  book.begin_step({2});
  EXPECT_NE(error_of([&] { book.acquire(3); }).find("not active in this step"), std::string::npos);
  EXPECT_NE(error_of([&] { book.release(2); }).find("is not leased"), std::string::npos);
  book.add_stall(0.25);
  book.add_stall(0.5);
  EXPECT_DOUBLE_EQ(book.stats().stall_seconds, 0.75);
}

TEST(ExpertCache, SlotsOfAPercentageRoundUpToAtLeastOne) {
  EXPECT_EQ(cache_slots_for(CacheSlots{}, 8), 8);
  EXPECT_EQ(cache_slots_for(CacheSlots{false, 3, 0.0}, 8), 3);
  EXPECT_EQ(cache_slots_for(CacheSlots{false, 0, 12.5}, 8), 1);
  EXPECT_EQ(cache_slots_for(CacheSlots{false, 0, 25.0}, 6), 2);  // 1.5 -> 2
  EXPECT_EQ(cache_slots_for(CacheSlots{false, 0, 50.0}, 8), 4);
  EXPECT_EQ(cache_slots_for(CacheSlots{false, 0, 1.0}, 8), 1);
  EXPECT_EQ(cache_slots_for(CacheSlots{false, 0, 100.0}, 128), 128);
}

}  // namespace
}  // namespace moe::test
