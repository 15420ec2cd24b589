#pragma once
// The scoring job: validate inputs on every rank, load the model, stream batches through it,
// write results collectively and make the run report.
#include <mpi.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "config/run_config.hpp"

namespace moe {

struct RunOutcome {
  nlohmann::json report;  // also written to RunConfig::report when set (rank 0)
};

// Collective over `world`. Throws moe::Error on bad input (every rank agrees before heavy work
// starts: the error is raised on all ranks) or on failure during the run.
RunOutcome run_scoring(const RunConfig& config, MPI_Comm world, std::FILE* log);

}  // namespace moe
