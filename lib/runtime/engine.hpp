#pragma once
// The scoring job: validate inputs on every rank, load the model, stream batches through it,
// write results collectively and make the run report.
#include <mpi.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "config/run_config.hpp"

namespace moe {

struct RunOutcome {
  nlohmann::json report;     // also written to RunConfig::report when set (rank 0)
  bool stopped = false;      // a stop signal ended the run before every batch was done
  int64_t batches_done = 0;  // in the output file, this run's and earlier runs'
  int64_t batches_total = 0;
};

// Collective over `world`. Throws moe::Error on bad input (every rank agrees before heavy work
// starts: the error is raised on all ranks) or on failure during the run. With resume = true an
// existing output of the same run is continued (its journal's batches are skipped). A stop signal
// (runtime/signals.hpp) ends the loop after the step in flight, on every rank.
RunOutcome run_scoring(const RunConfig& config, MPI_Comm world, std::FILE* log, bool resume = false);

}  // namespace moe
