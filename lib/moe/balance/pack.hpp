#pragma once
// Balanced packing with equal bin sizes (longest processing time first): items by load, heaviest
// first, each into the least-loaded bin that still has room; then moves and pairwise swaps out of
// the most loaded bin while they lower it (plain LPT was up to 6% above the optimum on 12 experts
// over 3 ranks). Items with the same key (replicas of one expert) never share a bin. Used for experts -> ranks
// (greedy), experts -> nodes and replicas -> ranks (replicate).
#include <vector>

namespace moe::balance {

struct PackItem {
  double load = 0;
  int key = 0;  // items with equal keys go to different bins
};

// Returns the bin of each item. Needs items.size() <= bins * capacity and at most `bins` items
// per key; ties go to the lower item index and the lower bin, so the result is deterministic.
std::vector<int> balanced_pack(const std::vector<PackItem>& items, int bins, int capacity);

}  // namespace moe::balance
