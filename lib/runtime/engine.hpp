#pragma once
// The scoring job: validate inputs on every rank, load the model, stream batches through it,
// write results collectively and make the run report.
#include <mpi.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "config/run_config.hpp"

namespace moe {

struct ScoringOptions {
  bool resume = false;   // continue an earlier run's results (PATH.partial, else PATH itself)
  bool force = false;    // replace files at output/report that are not moebatch's own outputs
  std::string run_file;  // an input: output and report must not be it
};

struct RunOutcome {
  nlohmann::json report;     // also written to RunConfig::report when set (rank 0)
  bool stopped = false;      // a stop signal ended the run before every batch was done
  int64_t batches_done = 0;  // in the output file, this run's and earlier runs'
  int64_t batches_total = 0;
  std::string results_path;  // where the results are: the output, or its partial file when stopped
};

// Collective over `world`. Throws moe::Error on bad input (every rank agrees before heavy work
// starts: the error is raised on all ranks); an error during the run ends the job (abort_job).
// Results are written to OUTPUT.partial and renamed to OUTPUT when every batch is done
// (io/output_file.hpp). With options.resume an earlier run's OUTPUT.partial (else OUTPUT) of the
// same run is continued (its journal's batches are skipped). A stop signal (runtime/signals.hpp)
// ends the loop after the step in flight, on every rank, leaving OUTPUT.partial for --resume.
RunOutcome run_scoring(const RunConfig& config, MPI_Comm world, std::FILE* log, const ScoringOptions& options = {});

}  // namespace moe
