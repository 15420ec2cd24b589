#pragma once
// A Communicator over NCCL for device buffers (memory of a CudaBackend).
//
// STATUS: compiled and linked without a GPU; unverified until tests/gpu/nccl_communicator_test
// runs on GPU machines.
//
// Every collective is enqueued on `stream` and returns without waiting for it, so pass the
// backend's stream (CudaBackend::stream()): collectives are then ordered with the ops before and
// after them, and the next copy_to_host sees their result. barrier() alone waits on the stream.
// Byte counts and displacements (alltoallv) are host arrays, read during the call.
// Data buffers may be device memory (the usual case: no copy, the call returns at once) or host
// memory (the LM head's per-slice logsumexps under tp): host buffers
// are staged through a device scratch buffer, and such a call returns with the result in host
// memory (it synchronises the stream). These small host exchanges are the only host round trips.
// Destroy the communicator before the backend whose stream it uses.
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <memory>

#include "comm/communicator.hpp"

namespace moe {

// Collective over `comm` (which it duplicates and frees): rank 0 makes the NCCL unique id and
// broadcasts it over MPI, then every rank joins with ncclCommInitRank on its current CUDA device
// (construct the CudaBackend first: it makes its device current). One rank per GPU.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream);

}  // namespace moe
