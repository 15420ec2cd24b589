#pragma once
// moe-bench model: one moe-score run of a loaded model (a run file, as for moe-score), then the
// model's FLOPs per token and each phase's achieved GFLOP/s against the best GEMM rate that
// moe-bench gemm measured in the same process just before.
#include <string>
#include <vector>

namespace moe {

struct GemmRates {
  double f32 = 0;  // best GFLOP/s over moe-bench gemm's shapes
  double bf16 = 0;
};

// Collective over MPI_COMM_WORLD; rank 0 prints the table and a PERFORMANCE line.
void bench_model(const std::string& run_file, const std::vector<std::string>& overrides, const GemmRates& rates,
                 const std::string& command);

}  // namespace moe
