#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/factory/device_comms.hpp"
#include "core/error.hpp"

#if MOE_HAVE_CUDA
#include "cuda_backend.hpp"
#include "nccl_communicator.hpp"
#endif

namespace moe {

std::unique_ptr<Backend> make_backend(const std::string& name, int local_rank) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
#if MOE_HAVE_CUDA
  if (name == "cuda") return make_cuda_backend(local_rank);
  fail("unknown backend '{}': valid backends are cpu, cuda", name);
#else
  (void)local_rank;
  if (name == "cuda")
    fail("backend 'cuda' was not built: configure with a CUDA toolkit (MOE_WITH_CUDA=ON), or use 'backend: cpu'");
  fail("unknown backend '{}': valid backends are cpu", name);
#endif
}

int node_local_rank(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int rank = 0;
  const int rc = MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  MOE_MPI_CHECK(rc);
  return rank;
}

std::unique_ptr<Communicator> make_backend_communicator(Backend& backend, MPI_Comm comm) {
#if MOE_HAVE_CUDA
  if (auto* cuda = dynamic_cast<CudaBackend*>(&backend)) return make_nccl_communicator(comm, cuda->stream());
#endif
  (void)backend;
  return make_mpi_communicator(comm);
}

CommunicatorMaker backend_communicator_maker(Backend& backend) {
  return [&backend](MPI_Comm comm) { return make_backend_communicator(backend, comm); };
}

}  // namespace moe
