// All-to-all variants and the rank topology, run under mpirun (tests/mpi/CMakeLists.txt registers
// 1, 2, 4 and 8 ranks with simulated nodes of 1, 2 or 4 ranks: `--ranks-per-node R`, 0 = real nodes).
// Every rank derives the whole (src, dst) byte-count matrix from a shared seed, so each can check
// its own receive buffer byte for byte and its own message count independently of the library.
#include "comm/alltoall.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "comm/topology.hpp"
#include "core/error.hpp"
#include "mpi_test_main.hpp"

namespace moe {
namespace {

using test::world_rank;
using test::world_size;

// World ranks of the members of `comm`, in comm rank order.
std::vector<int> members(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<int> out(static_cast<std::size_t>(size));
  int me = world_rank();
  MPI_Allgather(&me, 1, MPI_INT, out.data(), 1, MPI_INT, comm);
  return out;
}

// The payload byte at `index` of the block src -> dst.
uint8_t payload(int src, int dst, std::size_t index) {
  uint64_t x = (static_cast<uint64_t>(src) << 40) ^ (static_cast<uint64_t>(dst) << 20) ^ index;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<uint8_t>(x);
}

// Byte counts bytes[src * world + dst], the same on every rank.
using Matrix = std::vector<std::size_t>;

Matrix random_counts(int world, uint32_t seed, std::size_t max_bytes, double zero_fraction) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> size(1, max_bytes);
  std::bernoulli_distribution zero(zero_fraction);
  Matrix m(static_cast<std::size_t>(world * world));
  for (auto& b : m) b = zero(rng) ? 0 : size(rng);
  return m;
}

struct Exchange {
  std::vector<std::size_t> send_bytes, send_displs, recv_bytes, recv_displs;
  std::vector<uint8_t> send, expected;
};

Exchange make_exchange(const Matrix& m, int world, int me) {
  Exchange e;
  const auto n = static_cast<std::size_t>(world);
  e.send_bytes.resize(n);
  e.send_displs.resize(n);
  e.recv_bytes.resize(n);
  e.recv_displs.resize(n);
  std::size_t s = 0, r = 0;
  // Receive blocks in reverse rank order with a gap, so the layout is not simply contiguous.
  for (int p = 0; p < world; ++p) {
    const auto q = static_cast<std::size_t>(p);
    e.send_bytes[q] = m[static_cast<std::size_t>(me * world + p)];
    e.send_displs[q] = s;
    s += e.send_bytes[q] + 3;
  }
  for (int p = world - 1; p >= 0; --p) {
    const auto q = static_cast<std::size_t>(p);
    e.recv_bytes[q] = m[static_cast<std::size_t>(p * world + me)];
    e.recv_displs[q] = r;
    r += e.recv_bytes[q] + 5;
  }
  e.send.assign(s, 0xee);
  e.expected.assign(r, 0xcd);
  for (int p = 0; p < world; ++p) {
    const auto q = static_cast<std::size_t>(p);
    for (std::size_t i = 0; i < e.send_bytes[q]; ++i) e.send[e.send_displs[q] + i] = payload(me, p, i);
    for (std::size_t i = 0; i < e.recv_bytes[q]; ++i) e.expected[e.recv_displs[q] + i] = payload(p, me, i);
  }
  return e;
}

std::vector<uint8_t> run_variant(AllToAll& a2a, const Exchange& e) {
  std::vector<uint8_t> recv(e.expected.size(), 0xcd);  // gaps keep 0xcd, as in `expected`
  a2a.run(e.send.data(), e.send_bytes.data(), e.send_displs.data(), recv.data(), e.recv_bytes.data(),
          e.recv_displs.data());
  return recv;
}

std::size_t count_wrong(const std::vector<uint8_t>& got, const std::vector<uint8_t>& expected) {
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < got.size(); ++i) wrong += got[i] != expected[i];
  return wrong;
}

// What hierarchical must send from rank me = (node n, local l), from the count matrix alone:
// stage 1 to (n, l') != me: sum over n' of m[me][(n', l')]; stage 2 to (n', l), n' != n: sum over
// l_s of m[(n, l_s)][(n', l)]. Simulated nodes are consecutive ranks, real ones are taken from `topo`
// (whose mapping TopologyTest checks).
CommStats expected_hierarchical(const Matrix& m, const Topology& topo) {
  const int world = topo.world_size, rpn = topo.ranks_per_node, nodes = topo.num_nodes;
  const int me = topo.world_rank, n = topo.node_of(me), l = topo.local_of(me);
  auto rank = [&](int node, int local) {
    return topo.simulated_nodes ? node * rpn + local : topo.world_rank_of(node, local);
  };
  auto at = [&](int src, int dst) { return m[static_cast<std::size_t>(src * world + dst)]; };
  CommStats s;
  for (int lp = 0; lp < rpn; ++lp) {
    if (lp == l) continue;
    std::size_t bytes = 0;
    for (int np = 0; np < nodes; ++np) bytes += at(me, rank(np, lp));
    s.messages += bytes > 0;
    s.bytes += bytes;
  }
  for (int np = 0; np < nodes; ++np) {
    if (np == n) continue;
    std::size_t bytes = 0;
    for (int ls = 0; ls < rpn; ++ls) bytes += at(rank(n, ls), rank(np, l));
    s.messages += bytes > 0;
    s.bytes += bytes;
  }
  return s;
}

CommStats expected_flat(const Matrix& m, int world, int me) {
  CommStats s;
  for (int p = 0; p < world; ++p) {
    const std::size_t bytes = m[static_cast<std::size_t>(me * world + p)];
    if (p == me || bytes == 0) continue;
    s.messages += 1;
    s.bytes += bytes;
  }
  return s;
}

// Runs both variants on one count matrix and checks data, parity and message counts.
void check_exchange(const Topology& topo, AllToAll& flat, AllToAll& hier, const Matrix& m) {
  const int world = topo.world_size, me = topo.world_rank;
  const Exchange e = make_exchange(m, world, me);
  flat.reset_stats();
  hier.reset_stats();
  const std::vector<uint8_t> got_flat = run_variant(flat, e);
  const std::vector<uint8_t> got_hier = run_variant(hier, e);
  EXPECT_EQ(count_wrong(got_flat, e.expected), 0u) << "flat, rank " << me;
  EXPECT_EQ(count_wrong(got_hier, e.expected), 0u) << "hierarchical, rank " << me;
  EXPECT_TRUE(got_flat == got_hier) << "hierarchical differs from flat on rank " << me;

  const CommStats want_flat = expected_flat(m, world, me);
  EXPECT_EQ(flat.stats().messages, want_flat.messages) << "rank " << me;
  EXPECT_EQ(flat.stats().bytes, want_flat.bytes) << "rank " << me;
  const CommStats want_hier = expected_hierarchical(m, topo);
  EXPECT_EQ(hier.stats().messages, want_hier.messages) << "rank " << me;
  EXPECT_EQ(hier.stats().bytes, want_hier.bytes) << "rank " << me;
  EXPECT_LE(hier.stats().messages, static_cast<uint64_t>((topo.ranks_per_node - 1) + (topo.num_nodes - 1)))
      << "rank " << me;
}

class AllToAllTest : public ::testing::Test {
 protected:
  void SetUp() override {
    topo_ = std::make_unique<Topology>(MPI_COMM_WORLD, test::ranks_per_node_option());
    flat_ = make_alltoall("flat", *topo_, *backend_);
    hier_ = make_alltoall("hierarchical", *topo_, *backend_);
  }
  std::unique_ptr<Backend> backend_ = make_backend("cpu");
  std::unique_ptr<Topology> topo_;
  std::unique_ptr<AllToAll> flat_, hier_;
};

TEST_F(AllToAllTest, RandomCountsWithZeros) {
  const int world = topo_->world_size;
  uint32_t seed = 100;
  for (std::size_t max_bytes : {std::size_t{1}, std::size_t{7}, std::size_t{300}, std::size_t{5000}})
    for (double zeros : {0.0, 0.3, 0.8})
      check_exchange(*topo_, *flat_, *hier_, random_counts(world, seed++, max_bytes, zeros));
}

TEST_F(AllToAllTest, AllZeroAndSingleSender) {
  const int world = topo_->world_size;
  check_exchange(*topo_, *flat_, *hier_, Matrix(static_cast<std::size_t>(world * world), 0));
  // Only the last rank sends, to everyone (itself included).
  Matrix m(static_cast<std::size_t>(world * world), 0);
  for (int p = 0; p < world; ++p)
    m[static_cast<std::size_t>((world - 1) * world + p)] = 17 + static_cast<std::size_t>(p);
  check_exchange(*topo_, *flat_, *hier_, m);
}

TEST_F(AllToAllTest, UniformCountsUseTheMessageBound) {
  const int world = topo_->world_size;
  check_exchange(*topo_, *flat_, *hier_, Matrix(static_cast<std::size_t>(world * world), 64));
  EXPECT_EQ(flat_->stats().messages, static_cast<uint64_t>(world - 1));
  EXPECT_EQ(hier_->stats().messages, static_cast<uint64_t>((topo_->ranks_per_node - 1) + (topo_->num_nodes - 1)));
}

// Staging is reused: large, then small, then large again gives the right bytes each time.
TEST_F(AllToAllTest, ReusedAcrossCallsOfChangingSize) {
  const int world = topo_->world_size;
  for (std::size_t max_bytes : {std::size_t{20000}, std::size_t{3}, std::size_t{20000}, std::size_t{0}}) {
    const Matrix m = max_bytes == 0 ? Matrix(static_cast<std::size_t>(world * world), 0)
                                    : random_counts(world, 7 + static_cast<uint32_t>(max_bytes), max_bytes, 0.2);
    check_exchange(*topo_, *flat_, *hier_, m);
  }
}

// Non-blocking: three exchanges in flight at once, progressed, then waited for in an order that
// differs between ranks (the hierarchical variant must still start its cross-node stages in
// start order everywhere): each lands byte for byte, and the messages add up to three runs'.
TEST_F(AllToAllTest, SeveralInFlightAtOnceWaitedInAnyOrder) {
  const int world = topo_->world_size, me = topo_->world_rank;
  for (AllToAll* a2a : {flat_.get(), hier_.get()}) {
    SCOPED_TRACE(a2a->name());
    EXPECT_TRUE(a2a->overlaps()) << "MPI on host memory has a non-blocking all-to-all";
    for (uint32_t round = 0; round < 3; ++round) {
      std::vector<Matrix> matrices;
      std::vector<Exchange> exchanges;
      for (uint32_t i = 0; i < 3; ++i) {
        // The first one large (rendezvous: several progress calls), the others small (eager).
        matrices.push_back(random_counts(world, 900 + 10 * round + i, i == 0 ? 400000 : 64, 0.3));
        exchanges.push_back(make_exchange(matrices.back(), world, me));
      }
      std::vector<std::vector<uint8_t>> recv;
      for (const Exchange& e : exchanges) recv.emplace_back(e.expected.size(), 0xcd);
      std::vector<AllToAllRequest> requests(3);
      a2a->reset_stats();
      for (std::size_t i = 0; i < 3; ++i) {
        const Exchange& e = exchanges[i];
        a2a->start(e.send.data(), e.send_bytes.data(), e.send_displs.data(), recv[i].data(), e.recv_bytes.data(),
                   e.recv_displs.data(), requests[i]);
        a2a->progress();
      }
      const std::vector<std::size_t> order = (me + static_cast<int>(round)) % 2 == 0
                                                 ? std::vector<std::size_t>{2, 0, 1}
                                                 : std::vector<std::size_t>{0, 1, 2};
      for (const std::size_t i : order) {
        a2a->wait(requests[i]);
        EXPECT_EQ(count_wrong(recv[i], exchanges[i].expected), 0u) << "exchange " << i << ", rank " << me;
        a2a->progress();
      }
      CommStats want;
      for (const Matrix& m : matrices) {
        const CommStats one = a2a == flat_.get() ? expected_flat(m, world, me) : expected_hierarchical(m, *topo_);
        want.messages += one.messages;
        want.bytes += one.bytes;
      }
      EXPECT_EQ(a2a->stats().messages, want.messages) << "rank " << me;
      EXPECT_EQ(a2a->stats().bytes, want.bytes) << "rank " << me;
    }
  }
}

TEST(AllToAllFactory, UnknownNameListsTheValidOnes) {
  Topology topo(MPI_COMM_WORLD, test::ranks_per_node_option());
  auto backend = make_backend("cpu");
  try {
    make_alltoall("ring", topo, *backend);
    ADD_FAILURE() << "no error for an unknown name";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ring"), std::string::npos) << what;
    EXPECT_NE(what.find("flat"), std::string::npos) << what;
    EXPECT_NE(what.find("hierarchical"), std::string::npos) << what;
  }
  EXPECT_EQ(make_alltoall("flat", topo, *backend)->name(), "flat");
  EXPECT_EQ(make_alltoall("hierarchical", topo, *backend)->name(), "hierarchical");
}

TEST(TopologyTest, NodeAndCrossNodeGroups) {
  const int world = world_size(), me = world_rank();
  Topology topo(MPI_COMM_WORLD, test::ranks_per_node_option());
  EXPECT_EQ(topo.world_rank, me);
  EXPECT_EQ(topo.world_size, world);
  EXPECT_EQ(topo.num_nodes * topo.ranks_per_node, world);
  if (test::ranks_per_node_option() > 0) {
    const int rpn = test::ranks_per_node_option();
    EXPECT_TRUE(topo.simulated_nodes);
    EXPECT_EQ(topo.ranks_per_node, rpn);
    EXPECT_EQ(topo.num_nodes, world / rpn);
    EXPECT_EQ(topo.node, me / rpn);
    EXPECT_EQ(topo.local_rank, me % rpn);
    std::vector<int> node_members, cross_members;
    for (int l = 0; l < rpn; ++l) node_members.push_back(topo.node * rpn + l);
    for (int n = 0; n < world / rpn; ++n) cross_members.push_back(n * rpn + topo.local_rank);
    EXPECT_EQ(members(topo.node_comm), node_members);
    EXPECT_EQ(members(topo.cross_node_comm), cross_members);
  } else {
    // One host: every rank shares memory with every other.
    EXPECT_EQ(topo.num_nodes, 1);
    EXPECT_EQ(topo.local_rank, me);
  }
  for (int r = 0; r < world; ++r) EXPECT_EQ(topo.world_rank_of(topo.node_of(r), topo.local_of(r)), r);
  int rank = -1;
  MPI_Comm_rank(topo.node_comm, &rank);
  EXPECT_EQ(rank, topo.local_rank);
  MPI_Comm_rank(topo.cross_node_comm, &rank);
  EXPECT_EQ(rank, topo.node);
}

TEST(TopologyTest, TensorAndDataParallelGroups) {
  const int world = world_size(), me = world_rank();
  for (int tp = 1; tp <= world; ++tp) {
    if (world % tp != 0) continue;
    Topology topo(MPI_COMM_WORLD, test::ranks_per_node_option(), tp);
    EXPECT_EQ(topo.tp_size, tp);
    EXPECT_EQ(topo.tp_rank, me % tp);
    EXPECT_EQ(topo.dp_size, world / tp);
    EXPECT_EQ(topo.dp_rank, me / tp);
    std::vector<int> tp_members, dp_members;
    for (int t = 0; t < tp; ++t) tp_members.push_back((me / tp) * tp + t);
    for (int d = 0; d < world / tp; ++d) dp_members.push_back(d * tp + me % tp);
    EXPECT_EQ(members(topo.tp_comm), tp_members) << "tp " << tp;
    EXPECT_EQ(members(topo.dp_comm), dp_members) << "tp " << tp;
  }
}

TEST(TopologyTest, BadRanksPerNodeOrTpIsAnError) {
  const int world = world_size();
  EXPECT_THROW(Topology(MPI_COMM_WORLD, world + 1), Error);  // never divides the world
  EXPECT_THROW(Topology(MPI_COMM_WORLD, -1), Error);
  EXPECT_THROW(Topology(MPI_COMM_WORLD, test::ranks_per_node_option(), world + 1), Error);
  EXPECT_THROW(Topology(MPI_COMM_WORLD, test::ranks_per_node_option(), 0), Error);
  if (world % 3 != 0) {
    try {
      Topology bad(MPI_COMM_WORLD, 3);
      ADD_FAILURE() << "no error for ranks_per_node 3 with " << world << " ranks";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("parallel.ranks_per_node = 3"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace moe
