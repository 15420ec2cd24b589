#include "bench_model.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <cstdio>

#include "config/run_config.hpp"
#include "io/h5.hpp"
#include "io/token_dataset.hpp"
#include "runtime/engine.hpp"
#include "runtime/flops.hpp"

namespace moe {

void bench_model(const std::string& run_file, const std::vector<std::string>& overrides, const GemmRates& rates,
                 const std::string& command) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const RunConfig config = RunConfig::load(run_file, overrides);
  // The mean number of keys a query sees: sum over sequences of L (L + 1) / 2, over the tokens.
  double keys = 0, tokens = 0;
  {
    const TokenDataset input(config.input, MPI_COMM_WORLD);
    for (int64_t s = 0; s < input.num_seqs(); ++s) {
      const double len = static_cast<double>(input.length(s));
      keys += len * (len + 1) / 2;
      tokens += len;
    }
  }
  const bool bf16 =
      h5::File::open_read(config.model, MPI_COMM_WORLD).info("layers/0/attn/q_proj").kind == h5::ElementKind::bf16;
  const RunOutcome outcome = run_scoring(config, MPI_COMM_WORLD, stdout);
  if (rank != 0) return;
  const nlohmann::json& report = outcome.report;
  const ModelConfig model =
      ModelConfig::from_attributes(h5::File::open_read(config.model, MPI_COMM_SELF).read_attributes("/"), config.model);
  const std::map<std::string, double> flops = flops_per_token(model, tokens > 0 ? keys / tokens : 0.0);
  double per_token = 0;
  for (const auto& [phase, f] : flops) per_token += f;
  const double best = bf16 ? rates.bf16 : rates.f32;
  const double done = report["input"]["tokens"].get<double>();
  fmt::print("# {}\n# {}: {:.1f} M parameters, {} weights, {:.1f} MFLOP per token (mean {:.0f} keys per query)\n",
             command, config.model, static_cast<double>(model.parameter_count()) / 1e6, bf16 ? "bf16" : "f32",
             per_token / 1e6, tokens > 0 ? keys / tokens : 0.0);
  fmt::print(
      "# best {} GEMM rate in this run: {:.1f} GFLOP/s per rank (moe-bench gemm above); {} tokens on {} rank(s)\n",
      bf16 ? "bf16" : "f32", best, done, ranks);
  fmt::print("{:<16} {:>10} {:>12} {:>10} {:>8}\n", "phase", "seconds", "GFLOP/rank", "GFLOP/s", "of best");
  const nlohmann::json& phases = report["phase_seconds_max_over_ranks"];
  double loop_flops = 0;
  for (const auto& [phase, seconds_json] : phases.items()) {
    const double seconds = seconds_json.get<double>();
    const auto it = flops.find(phase);
    const double gflop = it == flops.end() ? 0.0 : it->second * done / ranks / 1e9;
    loop_flops += gflop;
    if (gflop > 0)
      fmt::print("{:<16} {:>10.3f} {:>12.1f} {:>10.1f} {:>7.0f}%\n", phase, seconds, gflop, gflop / seconds,
                 100 * gflop / seconds / best);
    else
      fmt::print("{:<16} {:>10.3f} {:>12} {:>10} {:>8}\n", phase, seconds, "-", "-", "-");
  }
  const double loop = report["throughput"]["loop_seconds"].get<double>();
  fmt::print("{:<16} {:>10.3f} {:>12.1f} {:>10.1f} {:>7.0f}%\n", "batch loop", loop, loop_flops, loop_flops / loop,
             100 * loop_flops / loop / best);
  fmt::print("PERFORMANCE model tokens_per_s={:.1f} mflop_per_token={:.1f} gflops={:.1f} of_best_gemm={:.2f}\n",
             done / loop, per_token / 1e6, loop_flops / loop, loop_flops / loop / best);
}

}  // namespace moe
