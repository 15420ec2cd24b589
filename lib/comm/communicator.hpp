#pragma once
// The communication interface the model and the dispatcher are written against. Buffers are
// memory of the backend the communicator was made for (host memory for MpiCommunicator).
// Every call is collective over the communicator's ranks.
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moe {

// Counters of what a communicator sent, for the run report.
struct CommStats {
  uint64_t messages = 0;  // point-to-point messages carrying data (self-copies excluded)
  uint64_t bytes = 0;     // bytes in those messages
};

// A started collective (Communicator::start_alltoallv): its buffers are the caller's until wait()
// returns. Owns what MPI reads until completion (the int count and displacement arrays), so it
// may be moved while in flight but not copied.
struct CommRequest {
  MPI_Request mpi = MPI_REQUEST_NULL;
  std::vector<int> counts;
  bool pending() const { return mpi != MPI_REQUEST_NULL; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual void allreduce_sum(float* data, std::size_t count) = 0;
  virtual void allreduce_sum(double* data, std::size_t count) = 0;
  virtual void allreduce_max(float* data, std::size_t count) = 0;
  // recv holds size() blocks of `bytes` each, in rank order.
  virtual void allgather(const void* send, std::size_t bytes, void* recv) = 0;
  // Byte counts and displacements per peer (host arrays of size()).
  virtual void alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
                         const std::size_t* recv_bytes, const std::size_t* recv_displs) = 0;
  virtual void barrier() = 0;

  // The non-blocking alltoallv: start, then wait before the buffers are touched; test() lets the
  // transfer advance (MPI progresses most transfers only inside MPI calls) and says whether it
  // is complete. Several may be in flight; every rank starts them in the same order. The
  // default runs the blocking alltoallv at start (a communicator without a non-blocking form,
  // e.g. NCCL, whose calls return at once on their stream anyway). Arrays as in alltoallv,
  // read during the call.
  virtual void start_alltoallv(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs,
                               void* recv, const std::size_t* recv_bytes, const std::size_t* recv_displs,
                               CommRequest& /*request*/) {
    alltoallv(send, send_bytes, send_displs, recv, recv_bytes, recv_displs);
  }
  virtual void wait(CommRequest& /*request*/) {}
  virtual bool test(CommRequest& /*request*/) { return true; }
  // Whether start_alltoallv returns before the data has moved (so compute can overlap it).
  virtual bool overlaps() const { return false; }

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  CommStats stats_;
};

// Host-buffer communicator over an MPI communicator (which it duplicates and frees).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm);

namespace detail {

// MPI's counts and displacements are ints, so a byte count past 2^31 - 1 (an exchange of large
// batches of wide rows) cannot be said in bytes. The MPI communicator says them in units of a
// contiguous datatype: the largest power of two, at most kMaxMessageUnit, that divides every
// count and displacement of one side of the call (whole f32 rows: d * 4 bytes, so 4 KiB for
// d = 1024 and 2^31 - 1 units of it). The two sides may pick different units: MPI matches the
// bytes (the type signatures), not the datatypes.
inline constexpr std::size_t kMaxMessageUnit = std::size_t{1} << 20;
std::size_t mpi_message_unit(const std::size_t* a, std::size_t na, const std::size_t* b, std::size_t nb);

}  // namespace detail

// Wraps a group of ranks (given as an MPI communicator, e.g. one of Topology's) as a Communicator
// of some backend: make_mpi_communicator for host memory; an NCCL maker for device memory.
using CommunicatorMaker = std::function<std::unique_ptr<Communicator>(MPI_Comm)>;

}  // namespace moe
