#pragma once
// Synthetic routing histories for the planners' tests and `moe-bench place`: expert popularity
// Zipf(s) over a random order of the experts, each batch's rows drawn multinomially from it, and
// optionally pairs of experts whose popularity rises and falls together from batch to batch (the
// co-activation that the anticorrelation planner exploits).
#include <cstdint>

#include "moe/balance/counts.hpp"

namespace moe::balance {

struct SyntheticCountsOptions {
  int64_t experts = 64;
  int64_t batches = 64;
  int64_t rows_per_batch = 8192;  // routed rows per batch: tokens x top_k
  double zipf = 1.0;              // the i-th most popular expert has weight 1 / i^zipf (0: uniform)
  int64_t correlated_pairs = 0;   // the 2p most popular experts form p pairs (1st+2nd, 3rd+4th, ...)
  double pair_spread = 0.5;       // sigma of the log-normal factor a pair shares in each batch
  uint64_t seed = 1;
};

CountMatrix synthetic_counts(const SyntheticCountsOptions& options);

}  // namespace moe::balance
