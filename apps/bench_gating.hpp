#pragma once
// moe-bench gating: one MoE layer's token exchange and expert compute (plan, dispatch, grouped
// GEMMs, combine) under dynamic gating (exact rows, the paper's mechanism) against static gating
// (capacity per expert: padding and drops), on uniform and skewed (Zipf) routing.
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct GatingBenchOptions {
  int64_t tokens = 1024;  // tokens per rank
  int64_t hidden = 1024;  // d
  int64_t ffn = 2816;     // expert FFN width (SwiGLU)
  int64_t experts = 8;
  int64_t top_k = 2;
  double skew = 1.2;  // Zipf exponent of the skewed routing
  std::vector<double> capacity_factors = {1.0, 1.25, 2.0};
  std::string alltoall = "hierarchical";
  int ranks_per_node = 0;
  int reps = 5;
};

// Collective over MPI_COMM_WORLD; rank 0 prints the table and a PERFORMANCE line.
void bench_gating(const GatingBenchOptions& options, const std::string& command);

}  // namespace moe
