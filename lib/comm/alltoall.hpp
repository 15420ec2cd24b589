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
// Each also has a non-blocking form, start() / progress() / wait(), for overlapping a transfer with
// compute (the dispatcher's micro-batches): several may be in flight, started by every rank in the
// same order. overlaps() says whether start returns before the data has moved; where it does not
// (a communicator without a non-blocking all-to-all), start runs the whole exchange.
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

// One started all-to-all: `comm` for a single-stage variant, `flight` for a variant that keeps
// per-transfer state (its staging buffers) in a pool. Pass it to wait() before the buffers are
// touched; it stays at its address until then (a variant may keep a pointer to it).
struct AllToAllRequest {
  CommRequest comm;
  int flight = -1;
};

class AllToAll {
 public:
  virtual ~AllToAll() = default;
  virtual std::string name() const = 0;
  // Collective over the topology's world. Arrays are host arrays indexed by world rank; byte
  // counts must agree between sender and receiver (send_bytes[q] on rank p == recv_bytes[p] on
  // rank q). send and recv are backend memory.
  virtual void run(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                   const std::size_t* recv_bytes, const std::size_t* recv_displs) = 0;
  // run(), started: same arguments (arrays read during the call; send and recv untouched until
  // wait). The default runs it here.
  virtual void start(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                     const std::size_t* recv_bytes, const std::size_t* recv_displs, AllToAllRequest& /*request*/) {
    run(send, send_bytes, send_displs, recv, recv_bytes, recv_displs);
  }
  // Lets every started transfer advance (cheap: call it between GEMMs).
  virtual void progress() {}
  // Returns when `request`'s data is in recv (its send buffer may be reused).
  virtual void wait(AllToAllRequest& /*request*/) {}
  virtual bool overlaps() const { return false; }

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
// comm.start_alltoallv, counted the same way (messages are counted when they are started).
void counted_start_alltoallv(Communicator& comm, const void* send, const std::size_t* send_bytes,
                             const std::size_t* send_displs, void* recv, const std::size_t* recv_bytes,
                             const std::size_t* recv_displs, CommRequest& request, CommStats& stats);

}  // namespace detail

}  // namespace moe
