#include "core/error.hpp"

#include <mpi.h>

namespace moe::detail {

void fail_call(const char* api, const char* call, const std::string& what, const char* file, int line) {
  int initialized = 0;
  int rank = -1;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw Error(fmt::format("{} call {} failed at {}:{} (rank {}): {}", api, call, file, line, rank, what));
}

}  // namespace moe::detail
