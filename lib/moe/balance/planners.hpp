#pragma once
// Expert placement planners over one MoE layer's routing history (counts.hpp). Each returns, for
// every expert, the ranks holding a whole replica of it (ExpertHolders), with the same number of
// experts on every rank. Errors (moe::Error) are one line naming the value that cannot work.
//   contiguous       rank r holds experts [r*E/W, (r+1)*E/W): today's default, the baseline;
//   greedy           Huang et al.: experts by mean load, heaviest first, each to the least-loaded
//                    rank with room (ceil(E/W) experts per rank), then swaps of two experts
//                    between the most loaded rank and another while they lower its load;
//   anticorrelation  Huang et al.: as greedy, but expert a on rank n costs A_a + 0.5 * S_am for
//                    every expert m already there (A in units of the mean expert load, S the
//                    Pearson correlation of per-batch counts), so experts that fire together
//                    are spread;
//   replicate        beyond the paper (DeepSeek EPLB, vLLM/SGLang expert-parallel balancers):
//                    R extra slots per rank, filled by replicas of the expert with the highest
//                    load per replica, then replicas packed onto ranks; with ranks_per_node,
//                    experts are first packed onto nodes and replicated inside their node.
#include <string>
#include <vector>

#include "moe/balance/counts.hpp"

namespace moe::balance {

struct PlanOptions {
  int world = 1;
  int ranks_per_node = 0;  // replicate: 0 = one node (flat); else a divisor of world
  int replicas = 0;        // replicate: extra expert slots per rank
};

ExpertHolders plan_contiguous(int64_t experts, int world);
ExpertHolders plan_greedy(const CountMatrix& history, int world);
ExpertHolders plan_anticorrelation(const CountMatrix& history, int world);
ExpertHolders plan_replicate(const CountMatrix& history, const PlanOptions& options);

// The planners by name ("contiguous", "greedy", "anticorrelation", "replicate"); an unknown name's
// error lists the valid ones.
ExpertHolders plan_layer(const std::string& policy, const CountMatrix& history, const PlanOptions& options);
const std::vector<std::string>& planner_names();

// Experts per rank of a placement (rank r's slots), [world]; checks every expert has at least one
// holder, holders are distinct ranks in [0, world).
std::vector<int> experts_per_rank(const ExpertHolders& holders, int world);

}  // namespace moe::balance
