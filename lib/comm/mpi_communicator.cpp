// Communicator over MPI with host buffers: the CPU path's implementation.
#include <map>
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
    if (finalized) return;
    for (auto& [unit, type] : units_) MPI_Type_free(&type);
    MPI_Comm_free(&comm_);
  }

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, std::size_t count) override { allreduce(data, count, MPI_FLOAT, MPI_SUM); }
  void allreduce_sum(double* data, std::size_t count) override { allreduce(data, count, MPI_DOUBLE, MPI_SUM); }
  void allreduce_max(float* data, std::size_t count) override { allreduce(data, count, MPI_FLOAT, MPI_MAX); }

  void allgather(const void* send, std::size_t bytes, void* recv) override {
    const std::size_t unit = detail::mpi_message_unit(&bytes, 1, nullptr, 0);
    const int count = checked_count(bytes, unit);
    const MPI_Datatype type = unit_type(unit);
    MOE_MPI_CHECK(MPI_Allgather(send, count, type, recv, count, type, comm_));
    stats_.messages += static_cast<uint64_t>(size_ - 1);
    stats_.bytes += static_cast<uint64_t>(size_ - 1) * bytes;
  }

  void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                 const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    MPI_Datatype types[2];
    const int* c = int_counts(send_bytes, send_displs, recv_bytes, recv_displs, counts_, types);
    MOE_MPI_CHECK(MPI_Alltoallv(send, c, c + size_, types[0], recv, c + 2 * size_, c + 3 * size_, types[1], comm_));
  }

  void start_alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                       const std::size_t* recv_bytes, const std::size_t* recv_displs, CommRequest& request) override {
    MOE_CHECK(!request.pending(), "start_alltoallv: the request is still in flight");
    MPI_Datatype types[2];
    const int* c = int_counts(send_bytes, send_displs, recv_bytes, recv_displs, request.counts, types);
    MOE_MPI_CHECK(MPI_Ialltoallv(send, c, c + size_, types[0], recv, c + 2 * size_, c + 3 * size_, types[1], comm_,
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

  // A byte count or displacement in `unit`s as MPI's int.
  static int checked_count(std::size_t bytes, std::size_t unit) {
    MOE_CHECK(bytes / unit <= static_cast<std::size_t>(INT32_MAX),
              "MPI message: {} bytes in units of {} bytes exceed MPI's int count limit", bytes, unit);
    return static_cast<int>(bytes / unit);
  }

  // The committed datatype of `unit` contiguous bytes (made once per unit, freed with the
  // communicator: a started exchange may still use it).
  MPI_Datatype unit_type(std::size_t unit) {
    if (unit == 1) return MPI_BYTE;
    auto [at, made] = units_.try_emplace(unit, MPI_DATATYPE_NULL);
    if (made) {
      MOE_MPI_CHECK(MPI_Type_contiguous(static_cast<int>(unit), MPI_BYTE, &at->second));
      MOE_MPI_CHECK(MPI_Type_commit(&at->second));
    }
    return at->second;
  }

  // counts, displacements (send), counts, displacements (recv) as MPI's ints in `out`, in units
  // of types[0] (send) and types[1] (recv); the payload messages added to stats_; returns out's data.
  const int* int_counts(const std::size_t* send_bytes, const std::size_t* send_displs, const std::size_t* recv_bytes,
                        const std::size_t* recv_displs, std::vector<int>& out, MPI_Datatype types[2]) {
    const auto n = static_cast<std::size_t>(size_);
    const std::size_t send_unit = detail::mpi_message_unit(send_bytes, n, send_displs, n);
    const std::size_t recv_unit = detail::mpi_message_unit(recv_bytes, n, recv_displs, n);
    types[0] = unit_type(send_unit);
    types[1] = unit_type(recv_unit);
    out.resize(n * 4);
    int* sc = out.data();
    int* sd = sc + size_;
    int* rc = sd + size_;
    int* rd = rc + size_;
    for (int p = 0; p < size_; ++p) {
      sc[p] = checked_count(send_bytes[p], send_unit);
      sd[p] = checked_count(send_displs[p], send_unit);
      rc[p] = checked_count(recv_bytes[p], recv_unit);
      rd[p] = checked_count(recv_displs[p], recv_unit);
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
  std::map<std::size_t, MPI_Datatype> units_;
};

}  // namespace

std::size_t detail::mpi_message_unit(const std::size_t* a, std::size_t na, const std::size_t* b, std::size_t nb) {
  std::size_t bits = kMaxMessageUnit;
  for (std::size_t i = 0; i < na; ++i) bits |= a[i];
  for (std::size_t i = 0; i < nb; ++i) bits |= b[i];
  return bits & (~bits + 1);  // the lowest set bit: the largest power of two dividing them all
}

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) {
  return std::make_unique<MpiCommunicator>(comm);
}

}  // namespace moe
