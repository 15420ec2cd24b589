#include "core/exit.hpp"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/error.hpp"

namespace moe {

namespace {
const char* g_program = "moebatch";
}  // namespace

void set_program_name(const char* name) {
  g_program = name;
}

void abort_job(const std::string& message, int code) {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool mpi = initialized && !finalized;
  int rank = 0;
  if (mpi) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // An error that several ranks hit at once (every rank's write to a full disk) should read as
  // one line: rank 0 reports and aborts at once, the others give it a moment to do so first.
  if (rank > 0) std::this_thread::sleep_for(std::chrono::seconds(3));
  std::fprintf(stderr, "%s: error: %s\n", g_program, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (mpi) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

int exit_code_for(const std::exception& e) {
  return dynamic_cast<const IoError*>(&e) ? kIoErrorExitCode : kErrorExitCode;
}

}  // namespace moe
