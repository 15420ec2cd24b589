// The all-to-all factory and what the variants share.
#include "comm/alltoall.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace moe {

std::vector<std::string> alltoall_names() {
  return {"flat", "hierarchical"};
}

std::unique_ptr<AllToAll> make_alltoall(const std::string& name, const Topology& topology, Backend& backend,
                                        const CommunicatorMaker& make) {
  if (name == "flat") return make_flat_alltoall(topology, backend, make);
  if (name == "hierarchical") return make_hierarchical_alltoall(topology, backend, make);
  fail("unknown all-to-all '{}' (valid: {})", name, fmt::join(alltoall_names(), ", "));
}

namespace detail {

void counted_alltoallv(Communicator& comm, const void* send, const std::size_t* send_bytes,
                       const std::size_t* send_displs, void* recv, const std::size_t* recv_bytes,
                       const std::size_t* recv_displs, CommStats& stats) {
  const CommStats before = comm.stats();
  comm.alltoallv(send, send_bytes, send_displs, recv, recv_bytes, recv_displs);
  stats.messages += comm.stats().messages - before.messages;
  stats.bytes += comm.stats().bytes - before.bytes;
}

void counted_start_alltoallv(Communicator& comm, const void* send, const std::size_t* send_bytes,
                             const std::size_t* send_displs, void* recv, const std::size_t* recv_bytes,
                             const std::size_t* recv_displs, CommRequest& request, CommStats& stats) {
  const CommStats before = comm.stats();
  comm.start_alltoallv(send, send_bytes, send_displs, recv, recv_bytes, recv_displs, request);
  stats.messages += comm.stats().messages - before.messages;
  stats.bytes += comm.stats().bytes - before.bytes;
}

}  // namespace detail

}  // namespace moe
