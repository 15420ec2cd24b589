// The all-to-all factory and the point-to-point exchange the variants share.
#include "comm/alltoall.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <climits>
#include <cstring>

#include "core/error.hpp"

namespace moe {

std::vector<std::string> alltoall_names() {
  return {"flat", "hierarchical"};
}

std::unique_ptr<AllToAll> make_alltoall(const std::string& name, const Topology& topology) {
  if (name == "flat") return make_flat_alltoall(topology);
  if (name == "hierarchical") return make_hierarchical_alltoall(topology);
  fail("unknown all-to-all '{}' (valid: {})", name, fmt::join(alltoall_names(), ", "));
}

namespace detail {

namespace {
int checked_int(std::size_t n) {
  MOE_CHECK(n <= static_cast<std::size_t>(INT_MAX), "all-to-all message of {} bytes exceeds the MPI int count limit",
            n);
  return static_cast<int>(n);
}
constexpr int kTag = 7301;
}  // namespace

void exchange_blocks(MPI_Comm comm, const std::byte* send, const std::size_t* send_bytes,
                     const std::size_t* send_displs, std::byte* recv, const std::size_t* recv_bytes,
                     const std::size_t* recv_displs, std::vector<MPI_Request>& requests, CommStats& stats) {
  int rank = 0, size = 1;
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MOE_MPI_CHECK(MPI_Comm_size(comm, &size));
  const auto self = static_cast<std::size_t>(rank);
  MOE_CHECK(send_bytes[self] == recv_bytes[self], "all-to-all self block: sends {} bytes, expects {}", send_bytes[self],
            recv_bytes[self]);
  requests.clear();  // capacity kept: no allocation once the peer count stops growing
  // Receives first, starting after self so that peers are visited in a staggered order.
  for (int i = 1; i < size; ++i) {
    const int p = (rank - i + size) % size;
    const auto q = static_cast<std::size_t>(p);
    if (recv_bytes[q] == 0) continue;
    requests.emplace_back();
    MOE_MPI_CHECK(
        MPI_Irecv(recv + recv_displs[q], checked_int(recv_bytes[q]), MPI_BYTE, p, kTag, comm, &requests.back()));
  }
  for (int i = 1; i < size; ++i) {
    const int p = (rank + i) % size;
    const auto q = static_cast<std::size_t>(p);
    if (send_bytes[q] == 0) continue;
    requests.emplace_back();
    MOE_MPI_CHECK(
        MPI_Isend(send + send_displs[q], checked_int(send_bytes[q]), MPI_BYTE, p, kTag, comm, &requests.back()));
    stats.messages += 1;
    stats.bytes += send_bytes[q];
  }
  if (send_bytes[self] > 0) std::memcpy(recv + recv_displs[self], send + send_displs[self], send_bytes[self]);
  MOE_MPI_CHECK(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
}

}  // namespace detail

}  // namespace moe
