// Flat all-to-all-v: one alltoallv over the world communicator.
#include <vector>

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
  void start(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
             const std::size_t* recv_bytes, const std::size_t* recv_displs, AllToAllRequest& request) override {
    detail::counted_start_alltoallv(*world_, send, send_bytes, send_displs, recv, recv_bytes, recv_displs, request.comm,
                                    stats_);
    in_flight_.push_back(&request);
  }
  void progress() override {
    for (AllToAllRequest* r : in_flight_)
      if (r->comm.pending()) world_->test(r->comm);
  }
  void wait(AllToAllRequest& request) override {
    world_->wait(request.comm);
    std::erase(in_flight_, &request);
  }
  bool overlaps() const override { return world_->overlaps(); }

 private:
  std::unique_ptr<Communicator> world_;
  std::vector<AllToAllRequest*> in_flight_;  // started, not yet waited for (progress() tests them)
};

}  // namespace

std::unique_ptr<AllToAll> make_flat_alltoall(const Topology& topology, Backend& /*backend*/,
                                             const CommunicatorMaker& make) {
  return std::make_unique<FlatAllToAll>(topology, make);
}

}  // namespace moe
