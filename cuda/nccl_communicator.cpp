// Communicator over NCCL with device buffers (see nccl_communicator.hpp). UNVERIFIED on a GPU.
#include "nccl_communicator.hpp"

#include <algorithm>
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

  void allreduce_sum(float* data, std::size_t count) override {
    allreduce(data, count * sizeof(float), ncclFloat32, ncclSum);
  }
  void allreduce_sum(double* data, std::size_t count) override {
    allreduce(data, count * sizeof(double), ncclFloat64, ncclSum);
  }
  void allreduce_max(float* data, std::size_t count) override {
    allreduce(data, count * sizeof(float), ncclFloat32, ncclMax);
  }

  void allgather(const void* send, std::size_t bytes, void* recv) override {
    if (bytes == 0) return;
    const auto total = static_cast<std::size_t>(size_) * bytes;
    if (on_device(send) && on_device(recv)) {
      MOE_NCCL_CHECK(ncclAllGather(send, recv, bytes, ncclChar, nccl_comm_, stream_));
    } else {
      // Host memory (the LM head's per-slice logsumexps): staged through device scratch.
      char* stage = staging(bytes + total);
      MOE_CUDA_CHECK(cudaMemcpyAsync(stage, send, bytes, cudaMemcpyDefault, stream_));
      MOE_NCCL_CHECK(ncclAllGather(stage, stage + bytes, bytes, ncclChar, nccl_comm_, stream_));
      MOE_CUDA_CHECK(cudaMemcpyAsync(recv, stage + bytes, total, cudaMemcpyDefault, stream_));
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    stats_.messages += static_cast<uint64_t>(size_ - 1);
    stats_.bytes += static_cast<uint64_t>(size_ - 1) * bytes;
  }

  // Grouped point-to-point: one ncclSend/ncclRecv per peer with data, the self block as a
  // device-to-device copy on the same stream.
  void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                 const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    const auto* src = static_cast<const char*>(send);
    auto* dst = static_cast<char*>(recv);
    std::size_t send_total = 0;
    std::size_t recv_total = 0;
    for (int p = 0; p < size_; ++p) {
      send_total = std::max(send_total, send_displs[p] + send_bytes[p]);
      recv_total = std::max(recv_total, recv_displs[p] + recv_bytes[p]);
    }
    // Host arrays: the exchange runs on device copies, and the call returns with the result in
    // host memory.
    const bool host = (send_total > 0 && !on_device(send)) || (recv_total > 0 && !on_device(recv));
    if (host) {
      char* stage = staging(send_total + recv_total);
      if (send_total > 0) MOE_CUDA_CHECK(cudaMemcpyAsync(stage, send, send_total, cudaMemcpyDefault, stream_));
      src = stage;
      dst = stage + send_total;
    }
    exchange(src, send_bytes, send_displs, dst, recv_bytes, recv_displs);
    if (host) {
      if (recv_total > 0) MOE_CUDA_CHECK(cudaMemcpyAsync(recv, dst, recv_total, cudaMemcpyDefault, stream_));
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
  }

  // An allreduce of one element, then a wait on the stream: every rank has reached the barrier
  // (and its earlier collectives have completed) when this returns.
  void barrier() override {
    MOE_NCCL_CHECK(ncclAllReduce(barrier_flag_, barrier_flag_, 1, ncclFloat32, ncclSum, nccl_comm_, stream_));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  // Device buffers only. The self block is a copy on the stream; every other block one grouped
  // ncclSend/ncclRecv, so NCCL schedules all peers of the call together.
  void exchange(const char* src, const std::size_t* send_bytes, const std::size_t* send_displs, char* dst,
                const std::size_t* recv_bytes, const std::size_t* recv_displs) {
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

  void allreduce(void* data, std::size_t bytes, ncclDataType_t type, ncclRedOp_t op) {
    if (bytes == 0) return;
    const std::size_t count = bytes / (type == ncclFloat64 ? sizeof(double) : sizeof(float));
    if (on_device(data)) {
      MOE_NCCL_CHECK(ncclAllReduce(data, data, count, type, op, nccl_comm_, stream_));
      return;
    }
    char* stage = staging(bytes);
    MOE_CUDA_CHECK(cudaMemcpyAsync(stage, data, bytes, cudaMemcpyDefault, stream_));
    MOE_NCCL_CHECK(ncclAllReduce(stage, stage, count, type, op, nccl_comm_, stream_));
    MOE_CUDA_CHECK(cudaMemcpyAsync(data, stage, bytes, cudaMemcpyDefault, stream_));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Device (or managed) memory that NCCL can read on this device; anything else (pageable or
  // pinned host memory) is staged.
  static bool on_device(const void* ptr) {
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
      (void)cudaGetLastError();  // older runtimes flag unregistered host memory as an error
      return false;
    }
    return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  }

  // Device scratch of at least `bytes`, kept for the next host-buffer collective. The stream is
  // synchronised before a reallocation, so no queued copy still uses the old buffer.
  char* staging(std::size_t bytes) {
    if (bytes > staging_bytes_) {
      MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (staging_) MOE_CUDA_CHECK(cudaFree(staging_));
      staging_ = nullptr;
      staging_bytes_ = 0;
      void* p = nullptr;
      MOE_CUDA_CHECK(cudaMalloc(&p, bytes));
      staging_ = static_cast<char*>(p);
      staging_bytes_ = bytes;
    }
    return staging_;
  }

  void release() noexcept {
    if (staging_) {
      const cudaError_t rc = cudaFree(staging_);
      if (rc != cudaSuccess)
        std::fprintf(stderr, "moebatch: nccl communicator: cudaFree failed: %s\n", cudaGetErrorString(rc));
      staging_ = nullptr;
    }
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
  char* staging_ = nullptr;        // device copies of host buffers (staging())
  std::size_t staging_bytes_ = 0;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(comm, stream);
}

}  // namespace moe
