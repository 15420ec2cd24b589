#include "runtime/gather.hpp"

#include <algorithm>
#include <numeric>
#include <set>
#include <sstream>

#include "core/error.hpp"

namespace moe {

namespace {

template <typename T>
std::vector<T> gatherv(MPI_Comm comm, const std::vector<T>& mine, MPI_Datatype type) {
  int rank = 0;
  int size = 1;
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MOE_MPI_CHECK(MPI_Comm_size(comm, &size));
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<std::size_t>(size));
  MOE_MPI_CHECK(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm));
  std::vector<int> displs(static_cast<std::size_t>(size), 0);
  std::partial_sum(counts.begin(), counts.end() - 1, displs.begin() + 1);
  std::vector<T> all(rank == 0 ? static_cast<std::size_t>(displs.back() + counts.back()) : 0);
  MOE_MPI_CHECK(MPI_Gatherv(mine.data(), count, type, all.data(), counts.data(), displs.data(), type, 0, comm));
  return all;
}

}  // namespace

std::vector<int64_t> gather_to_root(MPI_Comm comm, const std::vector<int64_t>& mine) {
  return gatherv(comm, mine, MPI_INT64_T);
}

std::vector<std::string> gather_unique_lines(MPI_Comm comm, const std::vector<std::string>& mine) {
  std::string joined;
  for (const std::string& line : mine) joined += line + "\n";
  const std::vector<char> all = gatherv(comm, std::vector<char>(joined.begin(), joined.end()), MPI_CHAR);
  std::vector<std::string> lines;
  std::set<std::string> seen;
  std::istringstream in(std::string(all.begin(), all.end()));
  for (std::string line; std::getline(in, line);)
    if (seen.insert(line).second) lines.push_back(line);
  return lines;
}

}  // namespace moe
