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
#include <cstdint>
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
    counts_in_.resize(r * n);
    c_bytes_.assign(r, n * sizeof(uint64_t));
    c_displs_.resize(r);
    for (std::size_t l = 0; l < r; ++l) c_displs_[l] = l * n * sizeof(uint64_t);
    counts_dev_ = backend.alloc(2 * r * n * sizeof(uint64_t));
    in_offset_.resize(r * n);
    s1_bytes_.resize(r);
    s1_displs_.resize(r);
    r1_bytes_.resize(r);
    r1_displs_.resize(r);
    s2_bytes_.resize(n);
    s2_displs_.resize(n);
    r2_bytes_.resize(n);
    r2_displs_.resize(n);
  }

  std::string name() const override { return "hierarchical"; }

  void run(const void* send_v, const std::size_t* send_bytes, const std::size_t* send_displs, void* recv_v,
           const std::size_t* recv_bytes, const std::size_t* recv_displs) override {
    const auto* send = static_cast<const std::byte*>(send_v);
    auto* recv = static_cast<std::byte*>(recv_v);
    const std::size_t r = ranks_per_node_, n = num_nodes_;

    // Counts: counts_out_[l' * n + n'] = my bytes for (n', l'), sent to local rank l';
    // counts_in_[l_s * n + n'] = bytes of (my node, l_s) for (n', my local rank).
    for (std::size_t lp = 0; lp < r; ++lp)
      for (std::size_t np = 0; np < n; ++np) counts_out_[lp * n + np] = send_bytes[world_of_[np * r + lp]];
    // Through backend memory, as the communicator may only reach that; not counted in stats_.
    auto* c_out = counts_dev_.as<uint64_t>();
    auto* c_in = c_out + r * n;
    backend_.copy_to_device(c_out, counts_out_.data(), r * n * sizeof(uint64_t));
    node_comm_->alltoallv(c_out, c_bytes_.data(), c_displs_.data(), c_in, c_bytes_.data(), c_displs_.data());
    backend_.copy_to_host(counts_in_.data(), c_in, r * n * sizeof(uint64_t));

    // Stage 1: pack by (l', n'), exchange inside the node.
    for (std::size_t lp = 0; lp < r; ++lp) {
      std::size_t out = 0, in = 0;
      for (std::size_t np = 0; np < n; ++np) {
        out += counts_out_[lp * n + np];
        in += counts_in_[lp * n + np];
      }
      s1_bytes_[lp] = out;
      r1_bytes_[lp] = in;
    }
    std::byte* s1 = staging(backend_, stage1_send_, prefix(s1_bytes_, s1_displs_));
    std::byte* r1 = staging(backend_, stage1_recv_, prefix(r1_bytes_, r1_displs_));
    for (std::size_t lp = 0, at = 0; lp < r; ++lp)
      for (std::size_t np = 0; np < n; ++np) {
        const std::size_t w = world_of_[np * r + lp];
        copy_block(s1 + at, send + send_displs[w], send_bytes[w]);
        at += send_bytes[w];
      }
    detail::counted_alltoallv(*node_comm_, s1, s1_bytes_.data(), s1_displs_.data(), r1, r1_bytes_.data(),
                              r1_displs_.data(), stats_);

    // Reorder by destination node: for n', the blocks of every local source l_s in order.
    for (std::size_t ls = 0; ls < r; ++ls)
      for (std::size_t np = 0, at = r1_displs_[ls]; np < n; ++np) {
        in_offset_[ls * n + np] = at;
        at += counts_in_[ls * n + np];
      }
    for (std::size_t np = 0; np < n; ++np) {
      std::size_t out = 0, in = 0;
      for (std::size_t ls = 0; ls < r; ++ls) {
        out += counts_in_[ls * n + np];
        in += recv_bytes[world_of_[np * r + ls]];
      }
      s2_bytes_[np] = out;
      r2_bytes_[np] = in;
    }
    std::byte* s2 = staging(backend_, stage2_send_, prefix(s2_bytes_, s2_displs_));
    std::byte* r2 = staging(backend_, stage2_recv_, prefix(r2_bytes_, r2_displs_));
    for (std::size_t np = 0, at = 0; np < n; ++np)
      for (std::size_t ls = 0; ls < r; ++ls) {
        const std::size_t bytes = counts_in_[ls * n + np];
        copy_block(s2 + at, r1 + in_offset_[ls * n + np], bytes);
        at += bytes;
      }

    // Stage 2: across nodes between ranks of the same local index.
    detail::counted_alltoallv(*cross_comm_, s2, s2_bytes_.data(), s2_displs_.data(), r2, r2_bytes_.data(),
                              r2_displs_.data(), stats_);

    // Unpack into the layout MPI_Alltoallv would give.
    for (std::size_t ns = 0, at = 0; ns < n; ++ns)
      for (std::size_t ls = 0; ls < r; ++ls) {
        const std::size_t w = world_of_[ns * r + ls];
        copy_block(recv + recv_displs[w], r2 + at, recv_bytes[w]);
        at += recv_bytes[w];
      }
  }

 private:
  // Packs and unpacks one block with a backend copy.
  void copy_block(std::byte* to, const std::byte* from, std::size_t bytes) {
    if (bytes > 0) backend_.copy(to, from, bytes);
  }

  Backend& backend_;
  std::size_t ranks_per_node_, num_nodes_;
  std::unique_ptr<Communicator> node_comm_;   // rank = local rank
  std::unique_ptr<Communicator> cross_comm_;  // rank = node
  std::vector<std::size_t> world_of_;         // [node * ranks_per_node + local] -> world rank
  // Reused across calls: counts and displacements, staging buffers.
  std::vector<uint64_t> counts_out_, counts_in_;
  std::vector<std::size_t> c_bytes_, c_displs_;
  DeviceBuffer counts_dev_;  // [2, ranks_per_node * nodes]: counts out, counts in
  std::vector<std::size_t> in_offset_;
  std::vector<std::size_t> s1_bytes_, s1_displs_, r1_bytes_, r1_displs_;
  std::vector<std::size_t> s2_bytes_, s2_displs_, r2_bytes_, r2_displs_;
  DeviceBuffer stage1_send_, stage1_recv_, stage2_send_, stage2_recv_;
};

}  // namespace

std::unique_ptr<AllToAll> make_hierarchical_alltoall(const Topology& topology, Backend& backend,
                                                     const CommunicatorMaker& make) {
  return std::make_unique<HierarchicalAllToAll>(topology, backend, make);
}

}  // namespace moe
