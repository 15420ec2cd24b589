// moe::DispatchPlan against an independent, plainly written model of what it must hold: rows
// grouped by expert, in token order inside an expert, each routed (token, slot) exactly once with
// its gate weight; static gating keeps the first `capacity` rows of each expert, counts the rest as
// dropped and pads short experts with weight-0 rows. Routing is random (std::random_device seed,
// printed on failure).
#include "moe/dispatch_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace moe::test {
namespace {

struct Routing {
  int64_t num_tokens = 0;
  int64_t k = 0;
  int64_t experts = 0;
  std::vector<int32_t> ids;    // [T, k], k distinct experts per token (as a router gives)
  std::vector<float> weights;  // [T, k]
};

// One row of a plan: the source token and its gate weight.
struct Row {
  int32_t token;
  float weight;
  bool operator==(const Row&) const = default;
};

// Expected rows of each expert, in token order (a direct scan, not a counting sort).
std::vector<std::vector<Row>> rows_by_expert(const Routing& r) {
  std::vector<std::vector<Row>> out(static_cast<std::size_t>(r.experts));
  for (int64_t e = 0; e < r.experts; ++e) {
    for (int64_t t = 0; t < r.num_tokens; ++t) {
      for (int64_t s = 0; s < r.k; ++s) {
        const auto i = static_cast<std::size_t>(t * r.k + s);
        if (r.ids[i] == e) out[static_cast<std::size_t>(e)].push_back(Row{static_cast<int32_t>(t), r.weights[i]});
      }
    }
  }
  return out;
}

std::vector<int64_t> bincount(const Routing& r) {
  std::vector<int64_t> c(static_cast<std::size_t>(r.experts), 0);
  for (int32_t id : r.ids) ++c[static_cast<std::size_t>(id)];
  return c;
}

std::vector<Row> plan_rows(const DispatchPlan& p, int64_t begin, int64_t end) {
  std::vector<Row> rows;
  for (int64_t i = begin; i < end; ++i) {
    rows.push_back(Row{p.row_token[static_cast<std::size_t>(i)], p.row_weight[static_cast<std::size_t>(i)]});
  }
  return rows;
}

class DispatchPlanTest : public testing::Test {
 protected:
  void SetUp() override {
    seed_ = std::random_device{}();
    rng_.seed(seed_);
  }
  std::string seed_trace() const { return "seed = " + std::to_string(seed_); }

  // Random routing; `skew` sends most tokens' first choice to expert 0, so some experts overflow
  // and others stay short under static gating.
  Routing random_routing(int64_t num_tokens, int64_t k, int64_t experts, bool skew) {
    Routing r{num_tokens, k, experts, {}, {}};
    std::uniform_real_distribution<float> weight(0.01f, 1.0f);
    std::bernoulli_distribution coin(0.6);
    std::vector<int32_t> perm(static_cast<std::size_t>(experts));
    for (int64_t t = 0; t < num_tokens; ++t) {
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng_);
      if (skew && coin(rng_)) std::swap(perm[0], *std::find(perm.begin(), perm.end(), 0));
      for (int64_t s = 0; s < k; ++s) {
        r.ids.push_back(perm[static_cast<std::size_t>(s)]);
        r.weights.push_back(weight(rng_));
      }
    }
    return r;
  }

  unsigned seed_ = 0;
  std::mt19937_64 rng_;
};

void expect_dynamic_plan(const DispatchPlan& plan, const Routing& r) {
  const auto counts = bincount(r);
  EXPECT_EQ(plan.num_experts, r.experts);
  EXPECT_EQ(plan.counts, counts);
  EXPECT_EQ(plan.dropped, 0);
  EXPECT_EQ(plan.padded, 0);
  ASSERT_EQ(plan.expert_offsets.size(), static_cast<std::size_t>(r.experts + 1));
  EXPECT_EQ(plan.num_rows(), r.num_tokens * r.k);
  ASSERT_EQ(plan.row_token.size(), static_cast<std::size_t>(r.num_tokens * r.k));
  ASSERT_EQ(plan.row_weight.size(), plan.row_token.size());
  const auto expected = rows_by_expert(r);
  for (int64_t e = 0; e < r.experts; ++e) {
    const auto ue = static_cast<std::size_t>(e);
    EXPECT_EQ(plan.expert_offsets[ue + 1] - plan.expert_offsets[ue], counts[ue]) << "expert " << e;
    EXPECT_EQ(plan.kept[ue], counts[ue]) << "expert " << e;
    EXPECT_EQ(plan_rows(plan, plan.expert_offsets[ue], plan.expert_offsets[ue + 1]), expected[ue])
        << "rows of expert " << e;
  }
}

TEST_F(DispatchPlanTest, DynamicKeepsEveryRoutedRowGroupedByExpertInTokenOrder) {
  SCOPED_TRACE(seed_trace());
  for (const auto& [tokens, k, experts] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 1, 1}, {37, 2, 8}, {101, 4, 12}, {64, 1, 5}, {23, 3, 3}}) {
    SCOPED_TRACE("T=" + std::to_string(tokens) + " k=" + std::to_string(k) + " E=" + std::to_string(experts));
    const Routing r = random_routing(tokens, k, experts, tokens % 2 == 1);
    DispatchPlan plan;
    plan.build_dynamic(r.ids.data(), r.weights.data(), tokens, k, experts);
    expect_dynamic_plan(plan, r);

    // Every (token, slot) exactly once: match rows back to the routing by (token, expert), which
    // is unique because a token's k experts are distinct.
    std::map<std::pair<int32_t, int64_t>, int> seen;
    for (int64_t e = 0; e < experts; ++e) {
      for (int64_t i = plan.expert_offsets[e]; i < plan.expert_offsets[e + 1]; ++i) {
        ++seen[{plan.row_token[static_cast<std::size_t>(i)], e}];
      }
    }
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(tokens * k));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t s = 0; s < k; ++s) {
        const auto it = seen.find({static_cast<int32_t>(t), r.ids[static_cast<std::size_t>(t * k + s)]});
        ASSERT_NE(it, seen.end()) << "token " << t << " slot " << s << " missing";
        EXPECT_EQ(it->second, 1) << "token " << t << " slot " << s;
      }
    }
  }
}

TEST_F(DispatchPlanTest, DynamicWithNoTokens) {
  DispatchPlan plan;
  plan.build_dynamic(nullptr, nullptr, 0, 2, 4);
  EXPECT_EQ(plan.num_rows(), 0);
  EXPECT_EQ(plan.counts, std::vector<int64_t>(4, 0));
  EXPECT_EQ(plan.expert_offsets, std::vector<int64_t>(5, 0));
}

void expect_static_plan(const DispatchPlan& plan, const Routing& r, int64_t capacity) {
  const auto counts = bincount(r);
  int64_t dropped = 0;
  int64_t padded = 0;
  for (int64_t c : counts) {
    dropped += std::max<int64_t>(0, c - capacity);
    padded += std::max<int64_t>(0, capacity - c);
  }
  EXPECT_EQ(plan.counts, counts);
  EXPECT_EQ(plan.dropped, dropped);
  EXPECT_EQ(plan.padded, padded);
  EXPECT_EQ(plan.num_rows(), r.experts * capacity);
  ASSERT_EQ(plan.expert_offsets.size(), static_cast<std::size_t>(r.experts + 1));
  ASSERT_EQ(plan.row_token.size(), static_cast<std::size_t>(r.experts * capacity));
  ASSERT_EQ(plan.row_weight.size(), plan.row_token.size());
  const auto expected = rows_by_expert(r);
  for (int64_t e = 0; e < r.experts; ++e) {
    const auto ue = static_cast<std::size_t>(e);
    EXPECT_EQ(plan.expert_offsets[ue], e * capacity);
    EXPECT_EQ(plan.kept[ue], std::min(capacity, counts[ue])) << "routed rows placed for expert " << e;
    // The first min(count, capacity) routed rows in token order, then weight-0 padding rows.
    std::vector<Row> want(expected[ue].begin(),
                          expected[ue].begin() + static_cast<std::ptrdiff_t>(std::min(capacity, counts[ue])));
    want.resize(static_cast<std::size_t>(capacity), Row{0, 0.0f});
    EXPECT_EQ(plan_rows(plan, e * capacity, (e + 1) * capacity), want) << "rows of expert " << e;
  }
}

TEST_F(DispatchPlanTest, StaticDropsOverflowAndPadsShortExperts) {
  SCOPED_TRACE(seed_trace());
  for (const auto& [tokens, k, experts] :
       std::vector<std::tuple<int64_t, int64_t, int64_t>>{{37, 2, 8}, {101, 4, 12}, {64, 1, 5}, {9, 2, 16}}) {
    SCOPED_TRACE("T=" + std::to_string(tokens) + " k=" + std::to_string(k) + " E=" + std::to_string(experts));
    const Routing r = random_routing(tokens, k, experts, /*skew=*/true);
    // Below the mean load, so (with the skew) some experts drop and others pad.
    const int64_t capacity = std::max<int64_t>(1, tokens * k / experts * 3 / 4);
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    DispatchPlan plan;
    plan.build_static(r.ids.data(), r.weights.data(), tokens, k, experts, capacity);
    expect_static_plan(plan, r, capacity);
    EXPECT_GT(plan.dropped, 0) << "the case was meant to overflow";
    for (int64_t e = 0; e < experts; ++e) {
      for (int64_t i = e * capacity + std::min(capacity, plan.counts[e]); i < (e + 1) * capacity; ++i) {
        EXPECT_EQ(plan.row_weight[static_cast<std::size_t>(i)], 0.0f) << "padding row " << i;
      }
    }
  }
}

TEST_F(DispatchPlanTest, StaticWithRoomForEverythingKeepsTheDynamicRows) {
  SCOPED_TRACE(seed_trace());
  const int64_t tokens = 53, k = 2, experts = 7;
  const Routing r = random_routing(tokens, k, experts, /*skew=*/true);
  DispatchPlan dynamic;
  dynamic.build_dynamic(r.ids.data(), r.weights.data(), tokens, k, experts);
  for (const int64_t capacity : {tokens * k, tokens * k + 5}) {
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    DispatchPlan plan;
    plan.build_static(r.ids.data(), r.weights.data(), tokens, k, experts, capacity);
    expect_static_plan(plan, r, capacity);
    EXPECT_EQ(plan.dropped, 0);
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t n = plan.counts[e];
      EXPECT_EQ(plan_rows(plan, e * capacity, e * capacity + n),
                plan_rows(dynamic, dynamic.expert_offsets[e], dynamic.expert_offsets[e + 1]))
          << "kept rows of expert " << e;
    }
  }
}

TEST_F(DispatchPlanTest, StaticWithNoTokensIsAllPadding) {
  DispatchPlan plan;
  plan.build_static(nullptr, nullptr, 0, 2, 3, 4);
  EXPECT_EQ(plan.num_rows(), 12);
  EXPECT_EQ(plan.dropped, 0);
  EXPECT_EQ(plan.padded, 12);
  EXPECT_EQ(plan.row_weight, std::vector<float>(12, 0.0f));
}

// A plan object is reused across layers and batches: a rebuild must not carry anything over.
TEST_F(DispatchPlanTest, RebuildingReplacesThePreviousPlan) {
  SCOPED_TRACE(seed_trace());
  DispatchPlan plan;
  const Routing big = random_routing(80, 2, 6, /*skew=*/true);
  const Routing small = random_routing(11, 3, 9, /*skew=*/false);
  plan.build_static(big.ids.data(), big.weights.data(), big.num_tokens, big.k, big.experts, 5);
  expect_static_plan(plan, big, 5);
  plan.build_dynamic(small.ids.data(), small.weights.data(), small.num_tokens, small.k, small.experts);
  expect_dynamic_plan(plan, small);
  plan.build_static(small.ids.data(), small.weights.data(), small.num_tokens, small.k, small.experts, 2);
  expect_static_plan(plan, small, 2);
  plan.build_dynamic(big.ids.data(), big.weights.data(), big.num_tokens, big.k, big.experts);
  expect_dynamic_plan(plan, big);
}

TEST_F(DispatchPlanTest, StaticCapacityFormula) {
  SCOPED_TRACE(seed_trace());
  // Capacity factors exactly representable as num/den, so the expected value is integer math:
  // ceil(num * T * k / (den * E)), at least 1, and 0 for no tokens.
  const std::vector<std::pair<int64_t, int64_t>> factors = {{1, 2}, {1, 1}, {5, 4}, {3, 2}, {2, 1}, {1, 64}};
  std::uniform_int_distribution<int64_t> tokens_dist(0, 5000);
  std::uniform_int_distribution<int64_t> k_dist(1, 8);
  std::uniform_int_distribution<int64_t> experts_dist(1, 128);
  for (int trial = 0; trial < 500; ++trial) {
    const int64_t tokens = trial == 0 ? 0 : tokens_dist(rng_);
    const int64_t k = k_dist(rng_);
    const int64_t experts = experts_dist(rng_);
    for (const auto& [num, den] : factors) {
      const double cf = static_cast<double>(num) / static_cast<double>(den);
      const int64_t want =
          tokens == 0 ? 0 : std::max<int64_t>(1, (num * tokens * k + den * experts - 1) / (den * experts));
      ASSERT_EQ(static_capacity(tokens, k, experts, cf), want)
          << "T=" << tokens << " k=" << k << " E=" << experts << " cf=" << cf;
    }
  }
  EXPECT_EQ(static_capacity(8, 2, 8, 1.0), 2);
  EXPECT_EQ(static_capacity(8, 2, 8, 1.25), 3);  // 2.5 rounds up
  EXPECT_EQ(static_capacity(1, 1, 64, 1.0), 1);  // at least one row
  EXPECT_EQ(static_capacity(0, 2, 4, 1.25), 0);  // no tokens, no padding
}

}  // namespace
}  // namespace moe::test
