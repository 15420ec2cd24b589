#pragma once
// What every main does around its one call into the library: MPI start-up, and turning a
// moe::Error into one line on stderr and a non-zero exit (MPI_Abort when other ranks may wait).
#include <hdf5.h>
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <optional>

#include "core/error.hpp"
#include "core/exit.hpp"

namespace moe {

// Parses the command line. Returns the exit code to end with (--help and --version: 0; a bad
// command line: one line "PROGRAM: error: ..." and 1), or nothing when the program goes on.
inline std::optional<int> parse_command_line(CLI::App& app, const char* program, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", program, e.what(), program);
    return kErrorExitCode;
  }
  return std::nullopt;
}

// Runs body() between MPI_Init and MPI_Finalize. An error that every rank raised together
// (validation, where ranks agree first) is printed once by rank 0 and all ranks exit 1; any other
// error is printed by the rank that hit it, which then aborts the job. Exit codes: core/exit.hpp.
template <typename Body>
int run_main(const char* program, int argc, char** argv, Body&& body) {
  MPI_Init(&argc, &argv);
  // MPI errors come back as return codes, so that MOE_MPI_CHECK names the call and the place
  // (the rank then ends the job as for any error); communicators made from the world inherit it.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  set_program_name(program);
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int code = 0;
  try {
    code = body();
  } catch (const CollectiveError& e) {
    if (rank == 0) std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    code = kErrorExitCode;
  } catch (const std::exception& e) {
    if (size > 1) abort_job(e.what(), exit_code_for(e));
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    code = exit_code_for(e);
  }
  // HDF5 closes what is still open at exit; after MPI_Finalize that would be MPI-IO calls on a
  // finalized MPI (a crash at exit when a file failed to close, e.g. on a full disk).
  H5close();
  MPI_Finalize();
  return code;
}

}  // namespace moe
