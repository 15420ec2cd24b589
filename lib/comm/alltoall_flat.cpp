// Flat all-to-all-v: one alltoallv over the world communicator.
#include "comm/alltoall.hpp"

namespace moe {

namespace {

class FlatAllToAll final : public AllToAll {
 public:
  FlatAllToAll(const Topology& topology, const CommunicatorMaker& make) : world_(make(topology.world_comm)) {}

  std::string name() const override { return "flat"; }

  void run(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
           const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    detail::counted_alltoallv(*world_, send, send_bytes, send_displs, recv, recv_bytes, recv_displs, stats_);
  }

 private:
  std::unique_ptr<Communicator> world_;
};

}  // namespace

std::unique_ptr<AllToAll> make_flat_alltoall(const Topology& topology, Backend& /*backend*/,
                                             const CommunicatorMaker& make) {
  return std::make_unique<FlatAllToAll>(topology, make);
}

}  // namespace moe
