// Flat all-to-all-v: one message to every world peer with data.
#include <vector>

#include "comm/alltoall.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

class FlatAllToAll final : public AllToAll {
 public:
  explicit FlatAllToAll(const Topology& topology) {
    MOE_MPI_CHECK(MPI_Comm_dup(topology.world_comm, &comm_));
    requests_.reserve(2 * static_cast<std::size_t>(topology.world_size));
  }
  ~FlatAllToAll() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  std::string name() const override { return "flat"; }

  void run(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
           const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    detail::exchange_blocks(comm_, static_cast<const std::byte*>(send), send_bytes, send_displs,
                            static_cast<std::byte*>(recv), recv_bytes, recv_displs, requests_, stats_);
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::vector<MPI_Request> requests_;
};

}  // namespace

std::unique_ptr<AllToAll> make_flat_alltoall(const Topology& topology) {
  return std::make_unique<FlatAllToAll>(topology);
}

}  // namespace moe
