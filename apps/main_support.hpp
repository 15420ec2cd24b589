#pragma once
// What every main does around its one call into the library: MPI start-up, and turning a
// moe::Error into one line on stderr and a non-zero exit (MPI_Abort when other ranks may wait).
#include <mpi.h>

#include <cstdio>
#include <exception>

#include "core/error.hpp"

namespace moe {

// Runs body() between MPI_Init and MPI_Finalize. An error that every rank raised together
// (validation, where ranks agree first) is printed once by rank 0 and all ranks exit 1; any other
// error is printed by the rank that hit it, which then aborts the job.
template <typename Body>
int run_main(const char* program, int argc, char** argv, Body&& body) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int code = 0;
  try {
    code = body();
  } catch (const CollectiveError& e) {
    if (rank == 0) std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    code = 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    std::fflush(stderr);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    code = 1;
  }
  MPI_Finalize();
  return code;
}

}  // namespace moe
