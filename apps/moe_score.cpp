// moe-score: score a token dataset with an MoE model (the main job). See `moe-score --help`.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "config/run_config.hpp"
#include "main_support.hpp"
#include "runtime/engine.hpp"
#include "runtime/signals.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "moe-score: per-token log-probabilities of a token dataset under a Mixture-of-Experts model.\n"
      "Run it under mpirun or srun: the ranks share out the experts (expert parallelism), tp ranks\n"
      "slice the other weights (parallel.tp), and the world / tp data-parallel groups share out the\n"
      "batches. Writes the results (HDF5: logprobs, seq_logprob, seq_tokens) and, when `report` is\n"
      "set, a JSON run report.",
      "moe-score"};
  std::string run_file;
  std::vector<std::string> overrides;
  app.add_option("RUN.yaml", run_file, "run file: model, input, output, batch_size, parallel.*, moe.*, report")
      ->required();
  app.add_option("--set", overrides, "override a run-file key, e.g. --set batch_size=16 --set moe.gating=static")
      ->type_name("KEY=VALUE");
  bool resume = false;
  app.add_flag("--resume", resume,
               "continue the output of an earlier run of the same model, input and configuration (skipping the "
               "batches its journal lists); start afresh when there is no output yet");
  bool force = false;
  app.add_flag("--force", force,
               "replace files at output and report that are not moe-score results or reports (never an input)");
  app.set_version_flag("--version", std::string("moe-score ") + MOE_VERSION);
  app.footer(
      "Example: mpirun -np 2 moe-score inputs/example.yaml --set output=scores.h5\n"
      "SIGTERM or SIGUSR1 stops every rank after the step in flight, with the finished batches in the output's\n"
      "journal, and exit code 75; run again with --resume to finish (docs/slurm.md).\n"
      "Outputs are written to OUTPUT.partial and renamed when complete; exit codes: 0 done, 1 error,\n"
      "74 writing an output failed, 75 stopped (README \"Outputs and exit codes\").");
  if (const auto code = moe::parse_command_line(app, "moe-score", argc, argv)) return *code;
  return moe::run_main("moe-score", argc, argv, [&] {
    // First, so that a signal at any later point stops the run cleanly instead of killing it.
    moe::install_stop_handlers();
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    moe::RunConfig config;
    moe::RunOutcome outcome;
    // The run file is parsed on every rank: a bad file is the same error everywhere.
    try {
      config = moe::RunConfig::load(run_file, overrides);
    } catch (const moe::Error& e) {
      throw moe::CollectiveError(e.what());
    }
    outcome = moe::run_scoring(config, MPI_COMM_WORLD, stdout, {resume, force, run_file});
    if (outcome.stopped) {
      if (rank == 0)
        fmt::print("moe-score: stopped by a signal with {} of {} batches in {}; run again with --resume to finish\n",
                   outcome.batches_done, outcome.batches_total, outcome.results_path);
      return moe::kStoppedExitCode;
    }
    if (rank == 0) {
      const auto& r = outcome.report;
      fmt::print("moe-score: {} sequences, {} tokens on {} rank(s) in {:.2f} s: {:.0f} tokens/s -> {}\n",
                 r["input"]["sequences"].get<int64_t>(), r["input"]["tokens"].get<int64_t>(),
                 r["layout"]["world"].get<int>(), r["throughput"]["loop_seconds"].get<double>(),
                 r["throughput"]["tokens_per_second"].get<double>(), config.output);
      if (!config.report.empty()) fmt::print("moe-score: run report -> {}\n", config.report);
    }
    return 0;
  });
}
