#pragma once
// Communication for data in a backend's memory, chosen by the backend (defined beside
// make_backend, above libmoe and cuda/, which alone knows every backend that was built):
//   cpu:  MPI on host memory (make_mpi_communicator, make_alltoall): the CPU path as before;
//   cuda: NCCL on the backend's stream (cuda/nccl_communicator.hpp); small host buffers (the
//         per-expert counts, the LM head's per-slice logsumexps) are staged through the device.
#include <mpi.h>

#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "comm/alltoall.hpp"
#include "comm/communicator.hpp"
#include "comm/topology.hpp"

namespace moe {

// This process's rank among the processes of its node (MPI_COMM_TYPE_SHARED). Collective over `comm`.
int node_local_rank(MPI_Comm comm);

// A communicator over `comm` (which it duplicates) for buffers of `backend`. Collective.
std::unique_ptr<Communicator> make_backend_communicator(Backend& backend, MPI_Comm comm);

// The payload all-to-all of the dispatcher for buffers of `backend` (names as make_alltoall).
// cuda: "flat" runs as grouped ncclSend/ncclRecv over the world; "hierarchical" is refused with
// a message naming "flat", until the all-to-all variants run over Communicator. On one rank
// (nothing to exchange) the MPI variant is returned for any backend. Collective.
std::unique_ptr<AllToAll> make_backend_alltoall(Backend& backend, const std::string& name, const Topology& topology);

}  // namespace moe
