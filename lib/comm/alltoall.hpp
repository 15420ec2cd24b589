#pragma once
// All-to-all-v variants over Communicators, chosen by name (make_alltoall). Buffers are memory of
// the backend given to the factory (device memory for a GPU backend with an NCCL maker), and any
// staging goes through that backend's copies. Every variant gives the receive layout of
// MPI_Alltoallv: the block from world rank p lands at recv + recv_displs[p].
//   flat:         one alltoallv over the world communicator: one message to every peer with data
//                 (up to world - 1 per rank).
//   hierarchical: the two-stage scheme of DeepSpeed-MoE / Tutel 2D: inside the node, then across
//                 nodes between ranks of the same local index (Topology's node and cross-node
//                 groups); at most (ranks_per_node - 1) + (nodes - 1) messages per rank, each byte
//                 moved twice.
// stats() counts the payload messages and bytes this rank sent (self-copies and empty messages
// excluded; the small count exchange of the hierarchical variant is not counted).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "comm/communicator.hpp"
#include "comm/topology.hpp"

namespace moe {

class AllToAll {
 public:
  virtual ~AllToAll() = default;
  virtual std::string name() const = 0;
  // Collective over the topology's world. Arrays are host arrays indexed by world rank; byte
  // counts must agree between sender and receiver (send_bytes[q] on rank p == recv_bytes[p] on
  // rank q). send and recv are backend memory.
  virtual void run(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                   const std::size_t* recv_bytes, const std::size_t* recv_displs) = 0;

  CommStats stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  CommStats stats_;
};

// The valid names for make_alltoall, in order.
std::vector<std::string> alltoall_names();
// Throws moe::Error listing the valid names for an unknown one. The object wraps (with `make`)
// the topology's communicators it uses, so it may outlive `topology`; it must not outlive `backend`.
std::unique_ptr<AllToAll> make_alltoall(const std::string& name, const Topology& topology, Backend& backend,
                                        const CommunicatorMaker& make = make_mpi_communicator);

// One variant per file (alltoall_flat.cpp, alltoall_hierarchical.cpp).
std::unique_ptr<AllToAll> make_flat_alltoall(const Topology& topology, Backend& backend, const CommunicatorMaker& make);
std::unique_ptr<AllToAll> make_hierarchical_alltoall(const Topology& topology, Backend& backend,
                                                     const CommunicatorMaker& make);

namespace detail {

// comm.alltoallv, with the payload messages and bytes it sent added to `stats`.
void counted_alltoallv(Communicator& comm, const void* send, const std::size_t* send_bytes,
                       const std::size_t* send_displs, void* recv, const std::size_t* recv_bytes,
                       const std::size_t* recv_displs, CommStats& stats);

}  // namespace detail

}  // namespace moe
