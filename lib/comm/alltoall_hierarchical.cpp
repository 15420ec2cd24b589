// Hierarchical all-to-all-v (DeepSpeed-MoE / Tutel 2D). Rank (n, l) = node n, local rank l.
// Both stages are alltoallv calls on Communicators wrapping Topology's node and cross-node groups;
// packing and unpacking are backend copies into backend staging buffers.
//   counts: an all-to-all on the node of the per-node byte counts each local peer will forward;
//   stage 1 (node comm):       (n, l) -> (n, l') one message: its blocks for (n', l') for every n',
//                               ordered by n';
//   reorder:                   group what arrived by destination node: for n', blocks from
//                               (n, l_s) for every l_s, ordered by l_s;
//   stage 2 (cross-node comm): (n, l') -> (n', l') one message: everything node n has for (n', l');
//   unpack:                    the block from (n_s, l_s) goes to recv + recv_displs[world(n_s, l_s)].
// Stage 2 sizes need no exchange: the receiver's recv_bytes already give them.
// Non-blocking (start/progress/wait): the stages run as the exchange advances; each exchange in
// flight has its own staging buffers (a Flight).
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/alltoall.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

// Grows `buffer` to at least `bytes` (never shrinks, so steady-state calls do not allocate).
std::byte* staging(Backend& backend, DeviceBuffer& buffer, std::size_t bytes) {
  if (buffer.bytes() < bytes) buffer = backend.alloc(bytes);
  return buffer.as<std::byte>();
}

// Exclusive prefix sum of sizes into displs; returns the total.
std::size_t prefix(const std::vector<std::size_t>& sizes, std::vector<std::size_t>& displs) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    displs[i] = total;
    total += sizes[i];
  }
  return total;
}

// One exchange in flight: what its stages need after start() returns. Kept in a pool and reused,
// so steady-state exchanges do not allocate.
struct Flight {
  bool busy = false;
  int stage = 0;  // 1: stage 1 in flight; 2: stage 2 in flight; 3: unpacked into recv
  CommRequest request;
  std::byte* recv = nullptr;
  std::vector<std::size_t> recv_bytes, recv_displs;  // the caller's, by world rank
  std::vector<uint64_t> counts_in;
  std::vector<std::size_t> in_offset;
  std::vector<std::size_t> s1_bytes, s1_displs, r1_bytes, r1_displs;
  std::vector<std::size_t> s2_bytes, s2_displs, r2_bytes, r2_displs;
  DeviceBuffer stage1_send, stage1_recv, stage2_send, stage2_recv;
};

class HierarchicalAllToAll final : public AllToAll {
 public:
  HierarchicalAllToAll(const Topology& t, Backend& backend, const CommunicatorMaker& make)
      : backend_(backend),
        ranks_per_node_(static_cast<std::size_t>(t.ranks_per_node)),
        num_nodes_(static_cast<std::size_t>(t.num_nodes)),
        node_comm_(make(t.node_comm)),
        cross_comm_(make(t.cross_node_comm)) {
    const std::size_t r = ranks_per_node_, n = num_nodes_;
    world_of_.resize(r * n);
    for (std::size_t node = 0; node < n; ++node)
      for (std::size_t local = 0; local < r; ++local)
        world_of_[node * r + local] =
            static_cast<std::size_t>(t.world_rank_of(static_cast<int>(node), static_cast<int>(local)));
    counts_out_.resize(r * n);
    c_bytes_.assign(r, n * sizeof(uint64_t));
    c_displs_.resize(r);
    for (std::size_t l = 0; l < r; ++l) c_displs_[l] = l * n * sizeof(uint64_t);
    counts_dev_ = backend.alloc(2 * r * n * sizeof(uint64_t));
  }

  std::string name() const override { return "hierarchical"; }

  void run(const void* send, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv,
           const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    AllToAllRequest request;
    start(send, send_bytes, send_displs, recv, recv_bytes, recv_displs, request);
    wait(request);
  }

  // Counts (blocking, small), pack, and stage 1 started; stage 2 starts once stage 1 is done
  // (progress or wait), always in start order, so every rank starts the cross-node stages of its
  // exchanges in the same order.
  void start(const void* send_v, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv_v,
             const std::size_t* recv_bytes, const std::size_t* recv_displs, AllToAllRequest& request) override {
    const auto* send = static_cast<const std::byte*>(send_v);
    const std::size_t r = ranks_per_node_, n = num_nodes_;
    request.flight = free_flight();
    Flight& f = *flights_[static_cast<std::size_t>(request.flight)];
    f.recv = static_cast<std::byte*>(recv_v);
    f.recv_bytes.assign(recv_bytes, recv_bytes + r * n);
    f.recv_displs.assign(recv_displs, recv_displs + r * n);

    // Counts: counts_out_[l' * n + n'] = my bytes for (n', l'), sent to local rank l';
    // counts_in[l_s * n + n'] = bytes of (my node, l_s) for (n', my local rank).
    for (std::size_t lp = 0; lp < r; ++lp)
      for (std::size_t np = 0; np < n; ++np) counts_out_[lp * n + np] = send_bytes[world_of_[np * r + lp]];
    // Through backend memory, as the communicator may only reach that; not counted in stats_.
    auto* c_out = counts_dev_.as<uint64_t>();
    auto* c_in = c_out + r * n;
    f.counts_in.resize(r * n);
    backend_.copy_to_device(c_out, counts_out_.data(), r * n * sizeof(uint64_t));
    node_comm_->alltoallv(c_out, c_bytes_.data(), c_displs_.data(), c_in, c_bytes_.data(), c_displs_.data());
    backend_.copy_to_host(f.counts_in.data(), c_in, r * n * sizeof(uint64_t));

    // Stage 1: pack by (l', n'), exchange inside the node.
    for (auto* v : {&f.s1_bytes, &f.s1_displs, &f.r1_bytes, &f.r1_displs}) v->resize(r);
    for (std::size_t lp = 0; lp < r; ++lp) {
      std::size_t out = 0, in = 0;
      for (std::size_t np = 0; np < n; ++np) {
        out += counts_out_[lp * n + np];
        in += f.counts_in[lp * n + np];
      }
      f.s1_bytes[lp] = out;
      f.r1_bytes[lp] = in;
    }
    std::byte* s1 = staging(backend_, f.stage1_send, prefix(f.s1_bytes, f.s1_displs));
    std::byte* r1 = staging(backend_, f.stage1_recv, prefix(f.r1_bytes, f.r1_displs));
    for (std::size_t lp = 0, at = 0; lp < r; ++lp)
      for (std::size_t np = 0; np < n; ++np) {
        const std::size_t w = world_of_[np * r + lp];
        copy_block(s1 + at, send + send_displs[w], send_bytes[w]);
        at += send_bytes[w];
      }
    detail::counted_start_alltoallv(*node_comm_, s1, f.s1_bytes.data(), f.s1_displs.data(), r1, f.r1_bytes.data(),
                                    f.r1_displs.data(), f.request, stats_);
    f.stage = 1;
    order_.push_back(request.flight);
  }

  void progress() override { advance(-1); }

  void wait(AllToAllRequest& request) override {
    MOE_CHECK(request.flight >= 0, "hierarchical all-to-all: wait without start");
    advance(request.flight);
    Flight& f = *flights_[static_cast<std::size_t>(request.flight)];
    f.busy = false;
    std::erase(order_, request.flight);
    request.flight = -1;
  }

  bool overlaps() const override { return node_comm_->overlaps() && cross_comm_->overlaps(); }

 private:
  int free_flight() {
    for (std::size_t i = 0; i < flights_.size(); ++i)
      if (!flights_[i]->busy) {
        flights_[i]->busy = true;
        return static_cast<int>(i);
      }
    flights_.push_back(std::make_unique<Flight>());
    flights_.back()->busy = true;
    return static_cast<int>(flights_.size() - 1);
  }

  // Moves flights on in start order: a stage 1 that is done (or, up to `until`, waited for)
  // starts its stage 2; a stage 2 that is done is unpacked. A flight whose stage 1 is not done
  // holds back the stage 2 of every later one. until >= 0: returns with that flight unpacked.
  void advance(int until) {
    bool blocked = false;
    bool reached = false;
    for (const int index : order_) {
      Flight& f = *flights_[static_cast<std::size_t>(index)];
      const bool must = !reached && until >= 0;
      if (index == until) reached = true;
      if (f.stage == 1 && !blocked) {
        if (must)
          node_comm_->wait(f.request);
        else if (!node_comm_->test(f.request)) {
          blocked = true;
          continue;
        }
        start_stage2(f);
      }
      if (f.stage == 2) {
        if (index == until)
          cross_comm_->wait(f.request);
        else if (!cross_comm_->test(f.request))
          continue;
        unpack(f);
      }
    }
  }

  // Reorder by destination node (for n', the blocks of every local source l_s in order), then
  // stage 2: across nodes between ranks of the same local index.
  void start_stage2(Flight& f) {
    const std::size_t r = ranks_per_node_, n = num_nodes_;
    f.in_offset.resize(r * n);
    for (std::size_t ls = 0; ls < r; ++ls)
      for (std::size_t np = 0, at = f.r1_displs[ls]; np < n; ++np) {
        f.in_offset[ls * n + np] = at;
        at += f.counts_in[ls * n + np];
      }
    for (auto* v : {&f.s2_bytes, &f.s2_displs, &f.r2_bytes, &f.r2_displs}) v->resize(n);
    for (std::size_t np = 0; np < n; ++np) {
      std::size_t out = 0, in = 0;
      for (std::size_t ls = 0; ls < r; ++ls) {
        out += f.counts_in[ls * n + np];
        in += f.recv_bytes[world_of_[np * r + ls]];
      }
      f.s2_bytes[np] = out;
      f.r2_bytes[np] = in;
    }
    std::byte* r1 = f.stage1_recv.as<std::byte>();
    std::byte* s2 = staging(backend_, f.stage2_send, prefix(f.s2_bytes, f.s2_displs));
    std::byte* r2 = staging(backend_, f.stage2_recv, prefix(f.r2_bytes, f.r2_displs));
    for (std::size_t np = 0, at = 0; np < n; ++np)
      for (std::size_t ls = 0; ls < r; ++ls) {
        const std::size_t bytes = f.counts_in[ls * n + np];
        copy_block(s2 + at, r1 + f.in_offset[ls * n + np], bytes);
        at += bytes;
      }
    detail::counted_start_alltoallv(*cross_comm_, s2, f.s2_bytes.data(), f.s2_displs.data(), r2, f.r2_bytes.data(),
                                    f.r2_displs.data(), f.request, stats_);
    f.stage = 2;
  }

  // Into the layout MPI_Alltoallv would give.
  void unpack(Flight& f) {
    const std::size_t r = ranks_per_node_, n = num_nodes_;
    const std::byte* r2 = f.stage2_recv.as<std::byte>();
    for (std::size_t ns = 0, at = 0; ns < n; ++ns)
      for (std::size_t ls = 0; ls < r; ++ls) {
        const std::size_t w = world_of_[ns * r + ls];
        copy_block(f.recv + f.recv_displs[w], r2 + at, f.recv_bytes[w]);
        at += f.recv_bytes[w];
      }
    f.stage = 3;
  }

  // Packs and unpacks one block with a backend copy.
  void copy_block(std::byte* to, const std::byte* from, std::size_t bytes) {
    if (bytes > 0) backend_.copy(to, from, bytes);
  }

  Backend& backend_;
  std::size_t ranks_per_node_, num_nodes_;
  std::unique_ptr<Communicator> node_comm_;   // rank = local rank
  std::unique_ptr<Communicator> cross_comm_;  // rank = node
  std::vector<std::size_t> world_of_;         // [node * ranks_per_node + local] -> world rank
  std::vector<uint64_t> counts_out_;          // reused by every start
  std::vector<std::size_t> c_bytes_, c_displs_;
  DeviceBuffer counts_dev_;  // [2, ranks_per_node * nodes]: counts out, counts in
  std::vector<std::unique_ptr<Flight>> flights_;
  std::vector<int> order_;  // flights in flight, in start order
};

}  // namespace

std::unique_ptr<AllToAll> make_hierarchical_alltoall(const Topology& topology, Backend& backend,
                                                     const CommunicatorMaker& make) {
  return std::make_unique<HierarchicalAllToAll>(topology, backend, make);
}

}  // namespace moe
