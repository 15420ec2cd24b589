#include "moe/balance/planners.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"
#include "moe/balance/pack.hpp"

namespace moe::balance {
namespace {

// Whole experts only: with fewer experts than ranks the contiguous placement slices experts
// instead, which these planners do not model.
void check_whole_experts(int64_t experts, int world, const char* policy) {
  MOE_CHECK(world > 0, "{} placement: world {} must be positive", policy, world);
  MOE_CHECK(experts >= world,
            "{} placement: {} experts on world {}: needs at least one whole expert per rank (use replicate)", policy,
            experts, world);
}

// Experts in decreasing mean load, ties to the lower id.
std::vector<int> by_load(const std::vector<double>& load) {
  std::vector<int> order(load.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return load[static_cast<std::size_t>(a)] > load[static_cast<std::size_t>(b)]; });
  return order;
}

}  // namespace

ExpertHolders plan_contiguous(int64_t experts, int world) {
  check_whole_experts(experts, world, "contiguous");
  ExpertHolders holders(static_cast<std::size_t>(experts));
  for (int r = 0; r < world; ++r)
    for (int64_t e = r * experts / world; e < (r + 1) * experts / world; ++e)
      holders[static_cast<std::size_t>(e)] = {r};
  return holders;
}

ExpertHolders plan_greedy(const CountMatrix& history, int world) {
  validate(history, "greedy placement: routing history");
  check_whole_experts(history.experts, world, "greedy");
  const std::vector<double> load = mean_load(history);
  std::vector<PackItem> items;
  for (int e = 0; e < static_cast<int>(history.experts); ++e) items.push_back({load[static_cast<std::size_t>(e)], e});
  const int capacity = static_cast<int>((history.experts + world - 1) / world);
  const std::vector<int> rank = balanced_pack(items, world, capacity);
  ExpertHolders holders(items.size());
  for (std::size_t e = 0; e < items.size(); ++e) holders[e] = {rank[e]};
  return holders;
}

ExpertHolders plan_anticorrelation(const CountMatrix& history, int world) {
  validate(history, "anticorrelation placement: routing history");
  check_whole_experts(history.experts, world, "anticorrelation");
  const auto E = static_cast<std::size_t>(history.experts);
  std::vector<double> load = mean_load(history);
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / static_cast<double>(E);
  // A in units of the mean expert load, so that A and the correlation term are comparable.
  for (double& a : load) a = mean > 0 ? a / mean : 1.0;
  const std::vector<double> corr = pearson_correlation(history);
  const auto capacity = static_cast<std::size_t>((history.experts + world - 1) / world);
  std::vector<double> rank_cost(static_cast<std::size_t>(world), 0.0);
  std::vector<std::vector<int>> on_rank(static_cast<std::size_t>(world));
  ExpertHolders holders(E);
  for (int a : by_load(load)) {
    int best = -1;
    double best_cost = 0;
    for (int n = 0; n < world; ++n) {
      const auto& here = on_rank[static_cast<std::size_t>(n)];
      if (here.size() >= capacity) continue;
      double cost = rank_cost[static_cast<std::size_t>(n)] + load[static_cast<std::size_t>(a)];
      for (int m : here) cost += 0.5 * corr[static_cast<std::size_t>(a) * E + static_cast<std::size_t>(m)];
      if (best < 0 || cost < best_cost) {
        best = n;
        best_cost = cost;
      }
    }
    rank_cost[static_cast<std::size_t>(best)] = best_cost;
    on_rank[static_cast<std::size_t>(best)].push_back(a);
    holders[static_cast<std::size_t>(a)] = {best};
  }
  return holders;
}

ExpertHolders plan_layer(const std::string& policy, const CountMatrix& history, const PlanOptions& options) {
  if (policy == "contiguous") return plan_contiguous(history.experts, options.world);
  if (policy == "greedy") return plan_greedy(history, options.world);
  if (policy == "anticorrelation") return plan_anticorrelation(history, options.world);
  if (policy == "replicate") return plan_replicate(history, options);
  std::string names;
  for (const auto& n : planner_names()) names += (names.empty() ? "" : ", ") + n;
  fail("unknown placement policy '{}' (valid: {})", policy, names);
}

const std::vector<std::string>& planner_names() {
  static const std::vector<std::string> names = {"contiguous", "greedy", "anticorrelation", "replicate"};
  return names;
}

std::vector<int> experts_per_rank(const ExpertHolders& holders, int world) {
  std::vector<int> count(static_cast<std::size_t>(world), 0);
  for (std::size_t e = 0; e < holders.size(); ++e) {
    const auto& h = holders[e];
    MOE_CHECK(!h.empty(), "placement: expert {} has no holder", e);
    for (std::size_t i = 0; i < h.size(); ++i) {
      MOE_CHECK(h[i] >= 0 && h[i] < world, "placement: expert {} on rank {}, outside world {}", e, h[i], world);
      MOE_CHECK(i == 0 || h[i - 1] < h[i], "placement: expert {}'s holders are not distinct ascending ranks", e);
      ++count[static_cast<std::size_t>(h[i])];
    }
  }
  return count;
}

}  // namespace moe::balance
