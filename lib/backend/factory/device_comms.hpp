#pragma once
// Communication for data in a backend's memory, chosen by the backend (defined beside
// make_backend, above libmoe and cuda/, which alone knows every backend that was built):
//   cpu:  MPI on host memory (make_mpi_communicator): the CPU path as before;
//   cuda: NCCL on the backend's stream (cuda/nccl_communicator.hpp); small host buffers (the LM
//         head's per-slice logsumexps under tp) are staged through the device.
#include <mpi.h>

#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "comm/communicator.hpp"

namespace moe {

// This process's rank among the processes of its node (MPI_COMM_TYPE_SHARED). Collective over `comm`.
int node_local_rank(MPI_Comm comm);

// A communicator over `comm` (which it duplicates) for buffers of `backend`. Collective.
std::unique_ptr<Communicator> make_backend_communicator(Backend& backend, MPI_Comm comm);

// make_backend_communicator as a CommunicatorMaker (for make_alltoall and the engine).
CommunicatorMaker backend_communicator_maker(Backend& backend);

}  // namespace moe
