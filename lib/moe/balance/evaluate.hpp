#pragma once
// How a placement balances a layer's routing, measured as Huang et al. do: on batches it was not
// built from. A rank's load in a batch is the rows it computes: the counts of the experts it
// holds, a replicated expert's rows split evenly between its holders. That is the dispatcher's
// rule (replicas on the sender's node first) exactly when an expert's replicas share one node:
// always with replicate's ranks_per_node, and for any placement run on one node.
#include <string>
#include <vector>

#include "moe/balance/counts.hpp"
#include "moe/balance/planners.hpp"

namespace moe::balance {

struct LayerEvaluation {
  double max_load = 0;            // Max Load: the most loaded rank's share of a batch's rows, worst batch
  double avg_max_load = 0;        // Avg Max Load: that share averaged over the batches
  double imbalance = 0;           // max / mean of the ranks' rows summed over all batches (1 = even)
  std::vector<double> rank_rows;  // [world] rows each rank computes, summed over the batches
};

// Batches without rows are skipped in Max Load and Avg Max Load. Checks that the placement
// covers test.experts experts on ranks in [0, world).
LayerEvaluation evaluate(const CountMatrix& test, const ExpertHolders& holders, int world);

// One line of the comparison table.
struct EvaluationRow {
  int64_t layer = 0;
  std::string policy;
  int64_t experts = 0;
  int slots = 0;  // experts (replicas) per rank
  LayerEvaluation eval;
};

// The paper's protocol for one layer: `policy`'s placement built on the first half of `counts`,
// evaluated on the second half.
struct PlannedLayer {
  ExpertHolders holders;
  EvaluationRow row;
};
PlannedLayer plan_and_evaluate(int64_t layer, const std::string& policy, const CountMatrix& counts,
                               const PlanOptions& options);

// The table moe-place and `moe-bench place` print: a header naming the build/test split and
// what the columns mean, then one line per (layer, policy).
std::string format_evaluation_table(const std::vector<EvaluationRow>& rows, int world, int64_t build_batches,
                                    int64_t test_batches);

}  // namespace moe::balance
