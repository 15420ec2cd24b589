// The expert cache's eviction policies and bookkeeping (lib/moe/cache/). Belady's miss count is
// checked against a brute-force optimum (every eviction choice, by dynamic programming over the
// resident set) on fresh random request streams; lifo and lru against hand-worked streams; the
// bookkeeping's slots, bytes and refusals directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "moe/cache/cache_book.hpp"
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

}  // namespace
}  // namespace moe::test
