#pragma once
// Routing counts of one MoE layer, the planners' input (Huang et al.'s activation history): the
// rows routed to each expert in each global batch, [batches, E] row-major. Placements are per
// layer, since PR-MoE layers differ in expert count.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace moe::balance {

struct CountMatrix {
  int64_t batches = 0;
  int64_t experts = 0;
  std::vector<int64_t> counts;  // [batches * experts]

  int64_t at(int64_t batch, int64_t expert) const { return counts[static_cast<std::size_t>(batch * experts + expert)]; }
  // Batches [first, first + count) as a matrix of their own.
  CountMatrix rows(int64_t first, int64_t count) const;
};

// For each expert, the ranks that hold a whole replica of it (distinct, ascending; at least one).
// A replicated expert's rows are split evenly between its holders. This is what the placement
// table is built from, one per MoE layer.
using ExpertHolders = std::vector<std::vector<int>>;

// Checks the shape and that no count is negative; `what` names the matrix in the message.
void validate(const CountMatrix& m, const std::string& what);

// Each expert's mean count over the batches.
std::vector<double> mean_load(const CountMatrix& m);

// Pearson correlation of the per-batch counts of every pair of experts, [E * E]; 0 for a pair
// where either expert's count never changes (the correlation is undefined there).
std::vector<double> pearson_correlation(const CountMatrix& m);

// The paper's protocol: the first half of the batches builds the placement, the second half tests
// it. Needs at least 2 batches.
std::pair<CountMatrix, CountMatrix> split_build_test(const CountMatrix& m);

}  // namespace moe::balance
