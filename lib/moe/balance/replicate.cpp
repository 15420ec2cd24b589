// The replicate planner (planners.hpp), after DeepSeek's EPLB: (1) with several nodes, pack the
// experts onto nodes (balanced, equal counts), (2) inside each node, add replicas one by one to
// the expert with the highest load per replica until the node's slots are full, (3) pack the
// replicas onto the node's ranks, never two replicas of one expert on a rank. Keeping an expert's
// replicas inside one node keeps its rows off the inter-node network.
#include <algorithm>

#include "core/error.hpp"
#include "moe/balance/pack.hpp"
#include "moe/balance/planners.hpp"

namespace moe::balance {
namespace {

// Replica counts for `experts` (loads `load`) filling `slots` places, at most `max_copies` each.
std::vector<int> replica_counts(const std::vector<int>& experts, const std::vector<double>& load, int slots,
                                int max_copies) {
  std::vector<int> copies(experts.size(), 1);
  for (int placed = static_cast<int>(experts.size()); placed < slots; ++placed) {
    int best = -1;
    double best_per_replica = 0;
    for (std::size_t i = 0; i < experts.size(); ++i) {
      if (copies[i] >= max_copies) continue;
      const double per_replica = load[static_cast<std::size_t>(experts[i])] / copies[i];
      if (best < 0 || per_replica > best_per_replica) {
        best = static_cast<int>(i);
        best_per_replica = per_replica;
      }
    }
    MOE_CHECK(best >= 0, "replicate placement: {} slots but only {} experts of at most {} replicas each", slots,
              experts.size(), max_copies);
    ++copies[static_cast<std::size_t>(best)];
  }
  return copies;
}

}  // namespace

ExpertHolders plan_replicate(const CountMatrix& history, const PlanOptions& options) {
  validate(history, "replicate placement: routing history");
  const int world = options.world;
  const int64_t E = history.experts;
  MOE_CHECK(world > 0, "replicate placement: world {} must be positive", world);
  MOE_CHECK(options.replicas >= 0, "replicate placement: --replicas {} must be >= 0", options.replicas);
  const int per_node = options.ranks_per_node > 0 ? options.ranks_per_node : world;
  MOE_CHECK(per_node <= world && world % per_node == 0,
            "replicate placement: world {} is not a whole number of nodes of {} ranks", world, per_node);
  const int nodes = world / per_node;
  const int64_t slots = (E + world - 1) / world + options.replicas;  // replicas per rank
  MOE_CHECK(slots <= E,
            "replicate placement: {} extra slot(s) per rank make {} slots per rank, more than the {} experts (a rank "
            "would hold two replicas of one expert)",
            options.replicas, slots, E);
  // As in EPLB, every node gets the same number of experts.
  MOE_CHECK(E % nodes == 0, "replicate placement: {} experts do not split evenly over {} nodes of {} ranks", E, nodes,
            per_node);

  const std::vector<double> load = mean_load(history);
  // (1) Experts onto nodes.
  std::vector<std::vector<int>> node_experts(static_cast<std::size_t>(nodes));
  {
    std::vector<PackItem> items;
    for (int e = 0; e < static_cast<int>(E); ++e) items.push_back({load[static_cast<std::size_t>(e)], e});
    const std::vector<int> node = balanced_pack(items, nodes, static_cast<int>(E / nodes));
    for (int e = 0; e < static_cast<int>(E); ++e)
      node_experts[static_cast<std::size_t>(node[static_cast<std::size_t>(e)])].push_back(e);
  }
  ExpertHolders holders(static_cast<std::size_t>(E));
  for (int k = 0; k < nodes; ++k) {
    const auto& experts = node_experts[static_cast<std::size_t>(k)];
    MOE_CHECK(static_cast<int64_t>(experts.size()) >= slots,
              "replicate placement: node {} holds {} experts, fewer than its {} slots per rank (fewer replicas or "
              "ranks per node)",
              k, experts.size(), slots);
    // (2) Replicas inside the node, (3) onto its ranks; a replica carries load / copies.
    const std::vector<int> copies = replica_counts(experts, load, per_node * static_cast<int>(slots), per_node);
    std::vector<PackItem> replicas;
    for (std::size_t i = 0; i < experts.size(); ++i)
      for (int c = 0; c < copies[i]; ++c)
        replicas.push_back({load[static_cast<std::size_t>(experts[i])] / copies[i], experts[i]});
    const std::vector<int> rank = balanced_pack(replicas, per_node, static_cast<int>(slots));
    for (std::size_t i = 0; i < replicas.size(); ++i)
      holders[static_cast<std::size_t>(replicas[i].key)].push_back(k * per_node + rank[i]);
  }
  for (auto& h : holders) std::sort(h.begin(), h.end());
  return holders;
}

}  // namespace moe::balance
