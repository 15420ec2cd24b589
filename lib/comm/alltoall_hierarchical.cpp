// Hierarchical all-to-all-v (DeepSpeed-MoE / Tutel 2D). Rank (n, l) = node n, local rank l.
//   counts: MPI_Alltoall on the node of the per-node byte counts each local peer will forward;
//   stage 1 (node comm):       (n, l) -> (n, l') one message: its blocks for (n', l') for every n',
//                               ordered by n';
//   reorder:                   group what arrived by destination node: for n', blocks from
//                               (n, l_s) for every l_s, ordered by l_s;
//   stage 2 (cross-node comm): (n, l') -> (n', l') one message: everything node n has for (n', l');
//   unpack:                    the block from (n_s, l_s) goes to recv + recv_displs[world(n_s, l_s)].
// Stage 2 sizes need no exchange: the receiver's recv_bytes already give them.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "comm/alltoall.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

// Grows `buffer` to at least `bytes` (never shrinks, so steady-state calls do not allocate).
std::byte* staging(std::vector<std::byte>& buffer, std::size_t bytes) {
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

void copy_block(std::byte* to, const std::byte* from, std::size_t bytes) {
  if (bytes > 0) std::memcpy(to, from, bytes);
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
  explicit HierarchicalAllToAll(const Topology& t)
      : ranks_per_node_(static_cast<std::size_t>(t.ranks_per_node)), num_nodes_(static_cast<std::size_t>(t.num_nodes)) {
    MOE_MPI_CHECK(MPI_Comm_dup(t.node_comm, &node_comm_));
    MOE_MPI_CHECK(MPI_Comm_dup(t.cross_node_comm, &cross_comm_));
    const std::size_t r = ranks_per_node_, n = num_nodes_;
    world_of_.resize(r * n);
    for (std::size_t node = 0; node < n; ++node)
      for (std::size_t local = 0; local < r; ++local)
        world_of_[node * r + local] =
            static_cast<std::size_t>(t.world_rank_of(static_cast<int>(node), static_cast<int>(local)));
    counts_out_.resize(r * n);
    counts_in_.resize(r * n);
    in_offset_.resize(r * n);
    s1_bytes_.resize(r);
    s1_displs_.resize(r);
    r1_bytes_.resize(r);
    r1_displs_.resize(r);
    s2_bytes_.resize(n);
    s2_displs_.resize(n);
    r2_bytes_.resize(n);
    r2_displs_.resize(n);
    requests_.reserve(2 * std::max(r, n));
  }
  ~HierarchicalAllToAll() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&cross_comm_);
    MPI_Comm_free(&node_comm_);
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
    MOE_MPI_CHECK(MPI_Alltoall(counts_out_.data(), static_cast<int>(n), MPI_UINT64_T, counts_in_.data(),
                               static_cast<int>(n), MPI_UINT64_T, node_comm_));

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
    std::byte* s1 = staging(stage1_send_, prefix(s1_bytes_, s1_displs_));
    std::byte* r1 = staging(stage1_recv_, prefix(r1_bytes_, r1_displs_));
    for (std::size_t lp = 0, at = 0; lp < r; ++lp)
      for (std::size_t np = 0; np < n; ++np) {
        const std::size_t w = world_of_[np * r + lp];
        copy_block(s1 + at, send + send_displs[w], send_bytes[w]);
        at += send_bytes[w];
      }
    detail::exchange_blocks(node_comm_, s1, s1_bytes_.data(), s1_displs_.data(), r1, r1_bytes_.data(),
                            r1_displs_.data(), requests_, stats_);

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
    std::byte* s2 = staging(stage2_send_, prefix(s2_bytes_, s2_displs_));
    std::byte* r2 = staging(stage2_recv_, prefix(r2_bytes_, r2_displs_));
    for (std::size_t np = 0, at = 0; np < n; ++np)
      for (std::size_t ls = 0; ls < r; ++ls) {
        const std::size_t bytes = counts_in_[ls * n + np];
        copy_block(s2 + at, r1 + in_offset_[ls * n + np], bytes);
        at += bytes;
      }

    // Stage 2: across nodes between ranks of the same local index.
    detail::exchange_blocks(cross_comm_, s2, s2_bytes_.data(), s2_displs_.data(), r2, r2_bytes_.data(),
                            r2_displs_.data(), requests_, stats_);

    // Unpack into the layout MPI_Alltoallv would give.
    for (std::size_t ns = 0, at = 0; ns < n; ++ns)
      for (std::size_t ls = 0; ls < r; ++ls) {
        const std::size_t w = world_of_[ns * r + ls];
        copy_block(recv + recv_displs[w], r2 + at, recv_bytes[w]);
        at += recv_bytes[w];
      }
  }

 private:
  std::size_t ranks_per_node_, num_nodes_;
  MPI_Comm node_comm_ = MPI_COMM_NULL;
  MPI_Comm cross_comm_ = MPI_COMM_NULL;
  std::vector<std::size_t> world_of_;  // [node * ranks_per_node + local] -> world rank
  // Reused across calls: counts and displacements, requests, staging buffers.
  std::vector<uint64_t> counts_out_, counts_in_;
  std::vector<std::size_t> in_offset_;
  std::vector<std::size_t> s1_bytes_, s1_displs_, r1_bytes_, r1_displs_;
  std::vector<std::size_t> s2_bytes_, s2_displs_, r2_bytes_, r2_displs_;
  std::vector<MPI_Request> requests_;
  std::vector<std::byte> stage1_send_, stage1_recv_, stage2_send_, stage2_recv_;
};

}  // namespace

std::unique_ptr<AllToAll> make_hierarchical_alltoall(const Topology& topology) {
  return std::make_unique<HierarchicalAllToAll>(topology);
}

}  // namespace moe
