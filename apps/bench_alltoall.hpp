#pragma once
// moe-bench alltoall: the all-to-all variants (flat, hierarchical) on uniform traffic, as an
// nccl-tests table.
#include <cstddef>
#include <string>

namespace moe {

struct AlltoallBenchOptions {
  int ranks_per_node = 0;  // 0: nodes from shared memory; > 0: simulated nodes of consecutive ranks
  std::size_t min_bytes = 1024;
  std::size_t max_bytes = std::size_t{64} << 20;
  int reps = 5;  // timed runs per size and variant (after one warm-up)
};

// Collective over MPI_COMM_WORLD; rank 0 prints the table and the PERFORMANCE line.
void bench_alltoall(const AlltoallBenchOptions& options, const std::string& command);

}  // namespace moe
