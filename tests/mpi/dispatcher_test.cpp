// AllToAllDispatcher under mpirun: every rank routes random tokens (some ranks none) to random
// experts, the "experts" scale each received row by a known factor (expert id + 1; a sliced
// expert's slice returns its share of it), and the combine must give, for every token,
// y0 + sum over its plan rows of weight * (expert + 1) * x, computed here in float64 from the
// rank's own plan. A row sent to the wrong rank, expert or position, lost or duplicated (a
// replicated expert computing a row twice), shows. Runs dynamic and static (padding and drops)
// plans, flat and hierarchical all-to-alls, layers with more and with fewer experts than ranks,
// under the contiguous default and random placements (replicas, uneven slices, empty ranks), in
// 1, 2, 3 and more micro-batches than a rank has experts (the phases run chunk by chunk with
// progress calls between them, as the MoE layer runs them): every split must give the float64
// answer and exactly the bits of one micro-batch.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backend/backend.hpp"
#include "backend/workspace.hpp"
#include "comm/alltoall.hpp"
#include "comm/topology.hpp"
#include "core/error.hpp"
#include "moe/alltoall_dispatcher.hpp"
#include "moe/dispatch_plan.hpp"
#include "moe/placement.hpp"
#include "moe/placement_random.hpp"
#include "mpi_test_main.hpp"

namespace moe {
namespace {

// The "experts" of micro-batch `chunk`: each local expert's rows scaled by its factor.
void compute_chunk(const DispatchHandle& h, int64_t chunk, const std::vector<LocalExpert>& mine, int64_t full_ffn,
                   int64_t d, std::vector<float>& out) {
  for (int64_t local = h.chunk_experts[chunk]; local < h.chunk_experts[chunk + 1]; ++local) {
    const LocalExpert& lx = mine[static_cast<std::size_t>(local)];
    const double share = static_cast<double>(lx.ffn()) / static_cast<double>(full_ffn);
    const double factor = static_cast<double>(lx.expert + 1) * share;
    for (int64_t r = h.local_offsets[2 * local]; r < h.local_offsets[2 * local + 2]; ++r)
      for (int64_t c = 0; c < d; ++c) out[r * d + c] = static_cast<float>(factor * h.expert_rows[r * d + c]);
  }
}

void run_case(int64_t experts, bool dynamic, const std::string& variant, uint32_t seed, bool random) {
  const int world = test::world_size(), me = test::world_rank();
  SCOPED_TRACE(std::to_string(experts) + " experts, " + (dynamic ? "dynamic" : "static") + ", " + variant + ", seed " +
               std::to_string(seed) + (random ? ", random placement" : ""));
  Topology topology(MPI_COMM_WORLD, test::ranks_per_node_option());
  auto backend = make_backend("cpu");
  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  auto alltoall = make_alltoall(variant, topology, *backend);
  ModelConfig model;
  model.num_layers = 1;
  model.expert_ffn = 12;
  model.top_k = std::min<int64_t>(3, experts);
  model.layer_num_experts = {experts};
  const ExpertPlacement placement = random ? random_placement(model, world, seed) : ExpertPlacement(model, world);
  const LayerPlacement& lp = placement.layer(0);
  const std::vector<LocalExpert>& mine = placement.local_experts(0, me);
  const auto num_local = static_cast<int64_t>(mine.size());
  std::vector<int> node_of(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) node_of[static_cast<std::size_t>(r)] = topology.node_of(r);
  Workspace ws(*backend);
  AllToAllDispatcher dispatcher(ws, *alltoall, *comm, placement, node_of);

  std::mt19937 rng(seed + 7919u * static_cast<uint32_t>(me));
  const int64_t d = 5, k = model.top_k;
  // Rank 1 (when there is one) has no tokens: it still takes part.
  const int64_t t = me == 1 ? 0 : std::uniform_int_distribution<int64_t>(8, 40)(rng);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<std::size_t>(t * d)), y(static_cast<std::size_t>(t * d));
  for (auto& v : x) v = normal(rng);
  for (auto& v : y) v = normal(rng);
  std::vector<int32_t> ids;
  std::vector<float> weights;
  for (int64_t i = 0; i < t; ++i) {
    std::vector<int32_t> all(static_cast<std::size_t>(experts));
    for (int64_t e = 0; e < experts; ++e) all[e] = static_cast<int32_t>(e);
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t j = 0; j < k; ++j) {
      ids.push_back(all[j]);
      weights.push_back(std::uniform_real_distribution<float>(0.1f, 1.0f)(rng));
    }
  }
  DispatchPlan plan;
  if (dynamic)
    plan.build_dynamic(ids.data(), weights.data(), t, k, experts);
  else
    plan.build_static(ids.data(), weights.data(), t, k, experts, static_capacity(t, k, experts, 0.75));

  std::vector<double> want(y.begin(), y.end());
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t r = plan.expert_offsets[e]; r < plan.expert_offsets[e + 1]; ++r)
      for (int64_t c = 0; c < d; ++c)
        want[plan.row_token[r] * d + c] +=
            static_cast<double>(plan.row_weight[r]) * static_cast<double>(e + 1) * x[plan.row_token[r] * d + c];

  DispatchHandle handle;
  dispatcher.dispatch(0, plan, x.data(), d, handle);
  const std::vector<int64_t>& offsets = handle.local_offsets;
  const int64_t n = handle.num_rows();
  ASSERT_EQ(static_cast<int64_t>(offsets.size()), 2 * num_local + 1);
  ASSERT_EQ(static_cast<int64_t>(handle.local_experts.size()), num_local);
  // Routed rows of a local expert, then its padding: what arrives equals what the plans kept.
  // (times the slices of a sliced expert; a replicated expert's rows arrive once).
  const auto copies = [&](int64_t e) {
    const auto& holders = lp.holders[static_cast<std::size_t>(e)];
    return holders[0].role == HolderRole::slice ? static_cast<int64_t>(holders.size()) : int64_t{1};
  };
  double routed_here = 0, routed_all = 0;
  for (int64_t local = 0; local < num_local; ++local) routed_here += offsets[2 * local + 1] - offsets[2 * local];
  for (int64_t e = 0; e < experts; ++e) routed_all += static_cast<double>(plan.kept[e] * copies(e));
  MPI_Allreduce(MPI_IN_PLACE, &routed_here, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &routed_all, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(routed_here, routed_all);
  for (int64_t local = 0; local < num_local; ++local)
    ASSERT_EQ(handle.local_experts[static_cast<std::size_t>(local)], mine[static_cast<std::size_t>(local)].expert);
  std::vector<float> out(static_cast<std::size_t>(n * d));
  compute_chunk(handle, 0, mine, model.expert_ffn, d, out);
  std::vector<float> y_one = y;
  dispatcher.combine(handle, out.data(), y_one.data());

  // Micro-batches, phase by phase with progress calls: the same bits as one. The count is the
  // same on every rank (the most local experts anywhere, plus 2: some chunks empty everywhere).
  int64_t most_local = num_local;
  MPI_Allreduce(MPI_IN_PLACE, &most_local, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  for (const int64_t chunks : {int64_t{2}, int64_t{3}, most_local + 2}) {
    SCOPED_TRACE(std::to_string(chunks) + " micro-batches");
    // An exchange of other rows first, so the buffers reused below hold other values: a row a
    // micro-batch failed to move would show.
    {
      std::vector<float> noise(x.size()), sink = y;
      for (auto& v : noise) v = normal(rng);
      dispatcher.set_chunks(1);
      dispatcher.dispatch(0, plan, noise.data(), d, handle);
      compute_chunk(handle, 0, mine, model.expert_ffn, d, out);
      dispatcher.combine(handle, out.data(), sink.data());
    }
    dispatcher.set_chunks(chunks);
    std::vector<float> y_chunked = y;
    std::fill(out.begin(), out.end(), std::nanf(""));
    dispatcher.layout(0, plan, d, handle);
    dispatcher.start_counts(handle);
    dispatcher.wait_counts(handle);
    dispatcher.start_payload(handle, x.data());
    ASSERT_EQ(handle.chunks, chunks);
    ASSERT_EQ(handle.chunk_experts.front(), 0);
    ASSERT_EQ(handle.chunk_experts.back(), num_local);
    // Out of order is refused before anything moves, on every rank alike.
    if (chunks > 1) {
      EXPECT_THROW(dispatcher.wait_payload(handle, 1), Error);
      EXPECT_THROW(dispatcher.start_combine(handle, 0, out.data()), Error);
    }
    for (int64_t c = 0; c < chunks; ++c) {
      dispatcher.wait_payload(handle, c);
      dispatcher.progress(handle);
      compute_chunk(handle, c, mine, model.expert_ffn, d, out);
      dispatcher.progress(handle);
      dispatcher.start_combine(handle, c, out.data());
    }
    dispatcher.wait_combine(handle, y_chunked.data());
    if (!y.empty()) {  // rank 1 has no tokens (and memcmp takes no null pointers)
      EXPECT_EQ(std::memcmp(y_chunked.data(), y_one.data(), sizeof(float) * y.size()), 0);
    }
  }
  dispatcher.set_chunks(1);
  y = y_one;
  double worst = 0;
  for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(y[i] - want[i]));
  EXPECT_LE(worst, 1e-4);
  // Rows received sum to rows in the plans (over all ranks), times the slices of each expert.
  double sent = 0, received = static_cast<double>(n);
  for (int64_t e = 0; e < experts; ++e)
    sent += static_cast<double>((plan.expert_offsets[e + 1] - plan.expert_offsets[e]) * copies(e));
  MPI_Allreduce(MPI_IN_PLACE, &sent, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &received, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(sent, received);
  if (!dynamic) {
    double dropped = static_cast<double>(plan.dropped);
    MPI_Allreduce(MPI_IN_PLACE, &dropped, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    EXPECT_GT(dropped, 0) << "capacity factor 0.75 should drop something";
  }
}

uint32_t shared_seed() {
  uint32_t seed = test::world_rank() == 0 ? std::random_device{}() : 0;
  MPI_Bcast(&seed, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
  return seed;
}

TEST(AllToAllDispatcher, RowsReachTheirExpertsAndComeBackWeighted) {
  const int world = test::world_size();
  const uint32_t seed = shared_seed();
  // More experts than ranks (uneven ranges), as many, and fewer (sliced) when world allows.
  std::vector<int64_t> expert_counts = {2 * world + 1, world};
  if (world >= 2) expert_counts.push_back(world / 2);
  for (const int64_t experts : expert_counts)
    for (const bool dynamic : {true, false})
      for (const char* variant : {"flat", "hierarchical"}) run_case(experts, dynamic, variant, seed, false);
}

TEST(AllToAllDispatcher, RandomPlacementsWithReplicasAndSlices) {
  const int world = test::world_size();
  const uint32_t seed = shared_seed();
  std::vector<int64_t> expert_counts = {2 * world + 1, world};
  if (world >= 2) expert_counts.push_back(world / 2);
  for (uint32_t i = 0; i < 3; ++i)
    for (const int64_t experts : expert_counts)
      for (const bool dynamic : {true, false})
        for (const char* variant : {"flat", "hierarchical"}) run_case(experts, dynamic, variant, seed + i, true);
}

}  // namespace
}  // namespace moe
