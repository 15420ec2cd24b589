// Communicator over MPI with host buffers: the CPU path's implementation.
#include <vector>

#include "comm/communicator.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) {
    MOE_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    MOE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MOE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    counts_.resize(static_cast<std::size_t>(size_) * 4);
  }
  // Never throws: under MPI an exception from one rank's destructor would deadlock the others.
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, std::size_t count) override { allreduce(data, count, MPI_FLOAT, MPI_SUM); }
  void allreduce_sum(double* data, std::size_t count) override { allreduce(data, count, MPI_DOUBLE, MPI_SUM); }
  void allreduce_max(float* data, std::size_t count) override { allreduce(data, count, MPI_FLOAT, MPI_MAX); }

  void allgather(const void* send, std::size_t bytes, void* recv) override {
    MOE_MPI_CHECK(MPI_Allgather(send, checked_int(bytes), MPI_BYTE, recv, checked_int(bytes), MPI_BYTE, comm_));
    stats_.messages += static_cast<uint64_t>(size_ - 1);
    stats_.bytes += static_cast<uint64_t>(size_ - 1) * bytes;
  }

  void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                 const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    const int* c = int_counts(send_bytes, send_displs, recv_bytes, recv_displs, counts_);
    MOE_MPI_CHECK(MPI_Alltoallv(send, c, c + size_, MPI_BYTE, recv, c + 2 * size_, c + 3 * size_, MPI_BYTE, comm_));
  }

  void start_alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                       const std::size_t* recv_bytes, const std::size_t* recv_displs, CommRequest& request) override {
    MOE_CHECK(!request.pending(), "start_alltoallv: the request is still in flight");
    const int* c = int_counts(send_bytes, send_displs, recv_bytes, recv_displs, request.counts);
    MOE_MPI_CHECK(MPI_Ialltoallv(send, c, c + size_, MPI_BYTE, recv, c + 2 * size_, c + 3 * size_, MPI_BYTE, comm_,
                                 &request.mpi));
  }
  void wait(CommRequest& request) override { MOE_MPI_CHECK(MPI_Wait(&request.mpi, MPI_STATUS_IGNORE)); }
  bool test(CommRequest& request) override {
    int done = 0;
    MOE_MPI_CHECK(MPI_Test(&request.mpi, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }
  bool overlaps() const override { return true; }

  void barrier() override { MOE_MPI_CHECK(MPI_Barrier(comm_)); }

 private:
  void allreduce(void* data, std::size_t count, MPI_Datatype type, MPI_Op op) {
    MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, checked_int(count), type, op, comm_));
  }
  static int checked_int(std::size_t n) {
    MOE_CHECK(n <= static_cast<std::size_t>(INT32_MAX), "MPI message of {} elements exceeds the int count limit", n);
    return static_cast<int>(n);
  }

  // counts, displacements (send), counts, displacements (recv) as MPI's ints in `out`, the
  // payload messages added to stats_; returns out's data.
  const int* int_counts(const std::size_t* send_bytes, const std::size_t* send_displs, const std::size_t* recv_bytes,
                        const std::size_t* recv_displs, std::vector<int>& out) {
    out.resize(static_cast<std::size_t>(size_) * 4);
    int* sc = out.data();
    int* sd = sc + size_;
    int* rc = sd + size_;
    int* rd = rc + size_;
    for (int p = 0; p < size_; ++p) {
      sc[p] = checked_int(send_bytes[p]);
      sd[p] = checked_int(send_displs[p]);
      rc[p] = checked_int(recv_bytes[p]);
      rd[p] = checked_int(recv_displs[p]);
      if (p != rank_ && send_bytes[p] > 0) {
        stats_.messages += 1;
        stats_.bytes += send_bytes[p];
      }
    }
    return out.data();
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> counts_;  // reused count/displacement arrays: no allocation per call
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) {
  return std::make_unique<MpiCommunicator>(comm);
}

}  // namespace moe
