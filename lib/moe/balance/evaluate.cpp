#include "moe/balance/evaluate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "core/error.hpp"
#include "moe/balance/planners.hpp"

namespace moe::balance {

LayerEvaluation evaluate(const CountMatrix& test, const ExpertHolders& holders, int world) {
  validate(test, "evaluation: test batches");
  MOE_CHECK(static_cast<int64_t>(holders.size()) == test.experts, "evaluation: placement of {} experts, counts of {}",
            holders.size(), test.experts);
  experts_per_rank(holders, world);  // checks the holders
  LayerEvaluation out;
  out.rank_rows.assign(static_cast<std::size_t>(world), 0.0);
  std::vector<double> rows(static_cast<std::size_t>(world));
  int64_t scored = 0;
  for (int64_t b = 0; b < test.batches; ++b) {
    std::fill(rows.begin(), rows.end(), 0.0);
    double total = 0;
    for (int64_t e = 0; e < test.experts; ++e) {
      const auto& h = holders[static_cast<std::size_t>(e)];
      const double share = static_cast<double>(test.at(b, e)) / static_cast<double>(h.size());
      for (int r : h) rows[static_cast<std::size_t>(r)] += share;
      total += static_cast<double>(test.at(b, e));
    }
    for (int r = 0; r < world; ++r) out.rank_rows[static_cast<std::size_t>(r)] += rows[static_cast<std::size_t>(r)];
    if (total <= 0) continue;
    const double max_share = *std::max_element(rows.begin(), rows.end()) / total;
    out.max_load = std::max(out.max_load, max_share);
    out.avg_max_load += max_share;
    ++scored;
  }
  if (scored > 0) out.avg_max_load /= static_cast<double>(scored);
  const double sum = std::accumulate(out.rank_rows.begin(), out.rank_rows.end(), 0.0);
  out.imbalance = sum > 0 ? *std::max_element(out.rank_rows.begin(), out.rank_rows.end()) / (sum / world) : 1.0;
  return out;
}

PlannedLayer plan_and_evaluate(int64_t layer, const std::string& policy, const CountMatrix& counts,
                               const PlanOptions& options) {
  const auto [build, test] = split_build_test(counts);
  PlannedLayer out;
  out.holders = plan_layer(policy, build, options);
  const std::vector<int> per_rank = experts_per_rank(out.holders, options.world);
  out.row = {layer, policy, counts.experts, *std::max_element(per_rank.begin(), per_rank.end()),
             evaluate(test, out.holders, options.world)};
  return out;
}

std::string format_evaluation_table(const std::vector<EvaluationRow>& rows, int world, int64_t build_batches,
                                    int64_t test_batches) {
  std::string out = fmt::format(
      "# placement built on batches [0, {}), tested on [{}, {}); {} ranks\n"
      "# Max Load: most loaded rank's share of a batch's rows, worst batch (ideal 1/{} = {:.4f}); Avg Max Load: "
      "mean over batches;\n# max/mean: most loaded rank's rows over the mean, all test batches together\n",
      build_batches, build_batches, build_batches + test_batches, world, world, 1.0 / world);
  out += fmt::format("{:>5} {:>16} {:>7} {:>5} | {:>8} {:>12} {:>8}\n", "layer", "policy", "experts", "slots",
                     "MaxLoad", "AvgMaxLoad", "max/mean");
  for (const auto& r : rows)
    out += fmt::format("{:>5} {:>16} {:>7} {:>5} | {:>8.4f} {:>12.4f} {:>8.3f}\n", r.layer, r.policy, r.experts,
                       r.slots, r.eval.max_load, r.eval.avg_max_load, r.eval.imbalance);
  return out;
}

}  // namespace moe::balance
