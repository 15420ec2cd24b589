#pragma once
// moe-bench place: the placement planners on a synthetic routing history (Zipf popularity,
// multinomial batches, optionally correlated pairs), built on the first half of the batches and
// evaluated on the second, as Huang et al. do. Prints the comparison table moe-place prints.
#include <string>

#include "moe/balance/planners.hpp"
#include "moe/balance/synthetic_counts.hpp"

namespace moe {

struct PlaceBenchOptions {
  balance::SyntheticCountsOptions counts;
  balance::PlanOptions plan{8, 0, 1};
  std::string loads_json;  // optional: per-rank rows of every policy, for scripts/plot_placement.py
  bool force = false;      // replace whatever file is at loads_json (else only an earlier loads file)
};

// Rank 0 prints the table and a PERFORMANCE line; the other ranks do nothing.
void bench_place(const PlaceBenchOptions& options, const std::string& command);

}  // namespace moe
