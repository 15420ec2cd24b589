// Communicator over NCCL with device buffers (see nccl_communicator.hpp). UNVERIFIED on a GPU.
#include "nccl_communicator.hpp"

#include <cstdio>

#include "check.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm comm, cudaStream_t stream) : stream_(stream) {
    MOE_MPI_CHECK(MPI_Comm_dup(comm, &mpi_comm_));
    try {
      MOE_MPI_CHECK(MPI_Comm_rank(mpi_comm_, &rank_));
      MOE_MPI_CHECK(MPI_Comm_size(mpi_comm_, &size_));
      ncclUniqueId id{};
      if (rank_ == 0) MOE_NCCL_CHECK(ncclGetUniqueId(&id));
      MOE_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi_comm_));
      MOE_NCCL_CHECK(ncclCommInitRank(&nccl_comm_, size_, id, rank_));
      void* flag = nullptr;
      MOE_CUDA_CHECK(cudaMalloc(&flag, sizeof(float)));
      barrier_flag_ = static_cast<float*>(flag);
    } catch (...) {
      release();
      throw;
    }
  }
  // Never throws: under MPI an exception from one rank's destructor would deadlock the others.
  ~NcclCommunicator() override { release(); }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, std::size_t count) override { allreduce(data, count, ncclFloat32, ncclSum); }
  void allreduce_sum(double* data, std::size_t count) override { allreduce(data, count, ncclFloat64, ncclSum); }
  void allreduce_max(float* data, std::size_t count) override { allreduce(data, count, ncclFloat32, ncclMax); }

  void allgather(const void* send, std::size_t bytes, void* recv) override {
    if (bytes == 0) return;
    MOE_NCCL_CHECK(ncclAllGather(send, recv, bytes, ncclChar, nccl_comm_, stream_));
    stats_.messages += static_cast<uint64_t>(size_ - 1);
    stats_.bytes += static_cast<uint64_t>(size_ - 1) * bytes;
  }

  // Grouped point-to-point: one ncclSend/ncclRecv per peer with data, the self block as a
  // device-to-device copy on the same stream.
  void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                 const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    const auto* src = static_cast<const char*>(send);
    auto* dst = static_cast<char*>(recv);
    if (send_bytes[rank_] > 0 || recv_bytes[rank_] > 0) {
      MOE_CHECK(send_bytes[rank_] == recv_bytes[rank_], "nccl alltoallv: rank {} sends itself {} bytes but expects {}",
                rank_, send_bytes[rank_], recv_bytes[rank_]);
      MOE_CUDA_CHECK(cudaMemcpyAsync(dst + recv_displs[rank_], src + send_displs[rank_], send_bytes[rank_],
                                     cudaMemcpyDefault, stream_));
    }
    MOE_NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      if (send_bytes[p] > 0) {
        MOE_NCCL_CHECK(ncclSend(src + send_displs[p], send_bytes[p], ncclChar, p, nccl_comm_, stream_));
        stats_.messages += 1;
        stats_.bytes += send_bytes[p];
      }
      if (recv_bytes[p] > 0)
        MOE_NCCL_CHECK(ncclRecv(dst + recv_displs[p], recv_bytes[p], ncclChar, p, nccl_comm_, stream_));
    }
    MOE_NCCL_CHECK(ncclGroupEnd());
  }

  // An allreduce of one element, then a wait on the stream: every rank has reached the barrier
  // (and its earlier collectives have completed) when this returns.
  void barrier() override {
    MOE_NCCL_CHECK(ncclAllReduce(barrier_flag_, barrier_flag_, 1, ncclFloat32, ncclSum, nccl_comm_, stream_));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  void allreduce(void* data, std::size_t count, ncclDataType_t type, ncclRedOp_t op) {
    if (count == 0) return;
    MOE_NCCL_CHECK(ncclAllReduce(data, data, count, type, op, nccl_comm_, stream_));
  }

  void release() noexcept {
    if (barrier_flag_) {
      const cudaError_t rc = cudaFree(barrier_flag_);
      if (rc != cudaSuccess)
        std::fprintf(stderr, "moebatch: nccl communicator: cudaFree failed: %s\n", cudaGetErrorString(rc));
      barrier_flag_ = nullptr;
    }
    if (nccl_comm_) {
      const ncclResult_t rc = ncclCommDestroy(nccl_comm_);
      if (rc != ncclSuccess)
        std::fprintf(stderr, "moebatch: nccl communicator: ncclCommDestroy failed: %s\n", ncclGetErrorString(rc));
      nccl_comm_ = nullptr;
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && mpi_comm_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_comm_);
    mpi_comm_ = MPI_COMM_NULL;
  }

  cudaStream_t stream_ = nullptr;
  MPI_Comm mpi_comm_ = MPI_COMM_NULL;
  ncclComm_t nccl_comm_ = nullptr;
  float* barrier_flag_ = nullptr;  // device scalar for barrier()
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(comm, stream);
}

}  // namespace moe
