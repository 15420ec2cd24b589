// ExpertPlacement: in the contiguous default every expert of every layer is held by exactly the
// ranks the dispatcher sends its rows to, ranges are contiguous and balanced, and sliced experts'
// FFN slices partition the columns (random expert counts and world sizes). Whole-expert
// assignments, random placements (moe-place --policy random) and the replica row rule are checked
// for the properties the dispatcher relies on.
#include "moe/placement.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/error.hpp"
#include "moe/placement_random.hpp"

namespace moe {
namespace {

ModelConfig config_with(std::vector<int64_t> experts, int64_t ffn) {
  ModelConfig c;
  c.num_layers = static_cast<int64_t>(experts.size());
  c.layer_num_experts = std::move(experts);
  c.expert_ffn = ffn;
  return c;
}

// held[e][col]: how many ranks hold column col of expert e, from the ranks' local experts.
std::vector<std::vector<int>> columns_held(const ExpertPlacement& p, int64_t layer, int64_t experts, int64_t ffn) {
  std::vector<std::vector<int>> held(static_cast<std::size_t>(experts),
                                     std::vector<int>(static_cast<std::size_t>(ffn), 0));
  for (int r = 0; r < p.world(); ++r)
    for (const LocalExpert& x : p.local_experts(layer, r))
      for (int64_t col = x.ffn_begin; col < x.ffn_end; ++col) ++held[x.expert][col];
  return held;
}

TEST(Placement, EveryExpertAndColumnIsHeldExactlyOnce) {
  std::random_device rd;
  const unsigned seed = rd();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    const int world = std::uniform_int_distribution<int>(1, 16)(rng);
    std::vector<int64_t> experts;
    for (int l = 0; l < 4; ++l) {
      // Dense layers, E >= world (any count), and E < world dividing it.
      const int kind = std::uniform_int_distribution<int>(0, 2)(rng);
      if (kind == 0) {
        experts.push_back(0);
      } else if (kind == 1) {
        experts.push_back(std::uniform_int_distribution<int64_t>(world, 3 * world + 5)(rng));
      } else {
        std::vector<int64_t> divisors;
        for (int64_t e = 1; e <= world; ++e)
          if (world % e == 0) divisors.push_back(e);
        experts.push_back(divisors[std::uniform_int_distribution<std::size_t>(0, divisors.size() - 1)(rng)]);
      }
    }
    const int64_t ffn = std::uniform_int_distribution<int64_t>(16, 200)(rng);
    const ModelConfig c = config_with(experts, ffn);
    const ExpertPlacement p(c, world);
    for (std::size_t l = 0; l < experts.size(); ++l) {
      const int64_t e_count = experts[l];
      const auto layer = static_cast<int64_t>(l);
      ASSERT_EQ(p.layer(layer).num_experts, e_count);
      if (e_count == 0) continue;
      std::size_t min_count = SIZE_MAX, max_count = 0;
      int64_t last_first = 0;
      for (int r = 0; r < world; ++r) {
        const std::vector<LocalExpert>& mine = p.local_experts(layer, r);
        min_count = std::min(min_count, mine.size());
        max_count = std::max(max_count, mine.size());
        // What this rank holds is what the experts' holder lists say it holds.
        for (std::size_t i = 0; i < mine.size(); ++i) {
          if (i > 0) {
            EXPECT_EQ(mine[i].expert, mine[i - 1].expert + 1) << "ranges are contiguous";
          }
          bool listed = false;
          for (const ExpertHolder& h : p.layer(layer).holders[mine[i].expert])
            listed = listed || (h.rank == r && h.ffn_begin == mine[i].ffn_begin && h.ffn_end == mine[i].ffn_end);
          EXPECT_TRUE(listed);
        }
        if (!mine.empty()) {
          EXPECT_GE(mine[0].expert, last_first) << "ranges are ordered";
          last_first = mine[0].expert;
        }
      }
      const auto held = columns_held(p, layer, e_count, ffn);
      for (int64_t e = 0; e < e_count; ++e)
        for (int64_t col = 0; col < ffn; ++col)
          ASSERT_EQ(held[e][col], 1) << "layer " << l << " expert " << e << " column " << col << ", world " << world;
      if (e_count >= world) {
        EXPECT_LE(max_count - min_count, 1u) << "balanced ranges";
      } else {
        EXPECT_EQ(static_cast<int64_t>(p.layer(layer).holders[0].size()), world / e_count);
      }
    }
  }
}

TEST(Placement, RefusesExpertsThatCannotBeSliced) {
  const ModelConfig c = config_with({0, 3}, 64);
  try {
    ExpertPlacement p(c, 4);
    FAIL() << "3 experts over 4 ranks must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1 has 3 experts"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ExpertPlacement(config_with({2}, 3), 8), Error);  // 4 slices of 3 columns
}

TEST(Placement, WholeExpertAssignments) {
  const ModelConfig c = config_with({0, 4}, 32);
  // Rank 2 holds nothing; expert 1 is replicated on ranks 0 and 3; rank 0 holds three experts.
  const ExpertPlacement p(c, 4, ExpertAssignment{{}, {{0}, {0, 3}, {1}, {0}}});
  std::vector<int64_t> rank0;
  for (const LocalExpert& x : p.local_experts(1, 0)) rank0.push_back(x.expert);
  EXPECT_EQ(rank0, (std::vector<int64_t>{0, 1, 3}));
  EXPECT_TRUE(p.local_experts(1, 2).empty());
  ASSERT_EQ(p.layer(1).holders[1].size(), 2u);
  EXPECT_EQ(p.layer(1).holders[1][1].role, HolderRole::replica);
  EXPECT_EQ(p.layer(1).holders[1][1].ffn_end, 32);
  try {
    ExpertPlacement(c, 4, ExpertAssignment{{}, {{0}, {5}, {1}, {0}}});
    FAIL() << "rank 5 of 4 must be refused";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "expert assignment: layer 1 expert 1 holder 0: rank 5 is out of range [0, 4)");
  }
}

// Every row of a sender goes to exactly one replica (all rows to every slice), whatever the node
// map, and the split is even among the replicas chosen.
TEST(Placement, ReplicaRowShareGivesEachRowToOneReplica) {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 500; ++trial) {
    const int world = std::uniform_int_distribution<int>(2, 12)(rng);
    const int per_node = std::uniform_int_distribution<int>(1, world)(rng);
    std::vector<int> node_of(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) node_of[static_cast<std::size_t>(r)] = r / per_node;
    std::vector<int> ranks(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) ranks[static_cast<std::size_t>(r)] = r;
    std::shuffle(ranks.begin(), ranks.end(), rng);
    const int copies = std::uniform_int_distribution<int>(1, std::min(world, 4))(rng);
    std::vector<ExpertHolder> holders;
    for (int i = 0; i < copies; ++i) holders.push_back({ranks[static_cast<std::size_t>(i)], 0, 8, HolderRole::replica});
    const int sender = std::uniform_int_distribution<int>(0, world - 1)(rng);
    const int64_t n = std::uniform_int_distribution<int64_t>(0, 50)(rng);
    std::vector<int> got(static_cast<std::size_t>(n), 0);
    std::set<std::size_t> used;
    bool near = false;
    for (const ExpertHolder& h : holders) near = near || node_of[h.rank] == node_of[sender];
    for (std::size_t h = 0; h < holders.size(); ++h) {
      const auto [b, e] = expert_row_share(holders, h, n, sender, node_of);
      ASSERT_LE(0, b);
      ASSERT_LE(b, e);
      ASSERT_LE(e, n);
      for (int64_t r = b; r < e; ++r) ++got[static_cast<std::size_t>(r)];
      if (e > b) used.insert(h);
      if (near && node_of[holders[h].rank] != node_of[sender]) {
        EXPECT_EQ(e, b) << "a replica on the sender's node exists";
      }
    }
    for (int64_t r = 0; r < n; ++r) ASSERT_EQ(got[static_cast<std::size_t>(r)], 1) << "row " << r;
  }
  // Slices get every row.
  const std::vector<ExpertHolder> slices = {{0, 0, 3, HolderRole::slice}, {1, 3, 8, HolderRole::slice}};
  EXPECT_EQ(expert_row_share(slices, 1, 7, 0, {}), (std::pair<int64_t, int64_t>{0, 7}));
}

// moe-place --policy random: valid tables with what the parity test is meant to cover.
TEST(Placement, RandomPlacementsCoverUnevenEmptyReplicatedAndSliced) {
  const ModelConfig c = config_with({0, 4, 0, 8, 12}, 96);
  for (const int world : {2, 4, 8}) {
    bool uneven = false, empty_rank = false, replicated = false, sliced = false;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      SCOPED_TRACE("world " + std::to_string(world) + " seed " + std::to_string(seed));
      const ExpertPlacement p = random_placement(c, world, seed);  // validated by its constructor
      const ExpertPlacement again = random_placement(c, world, seed);
      for (int64_t l = 0; l < c.num_layers; ++l) {
        if (!c.is_moe_layer(l)) continue;
        std::set<std::size_t> counts;
        for (int r = 0; r < world; ++r) {
          counts.insert(p.local_experts(l, r).size());
          empty_rank = empty_rank || p.local_experts(l, r).empty();
          ASSERT_EQ(p.local_experts(l, r).size(), again.local_experts(l, r).size()) << "same seed, same placement";
        }
        uneven = uneven || counts.size() > 1;
        for (const auto& holders : p.layer(l).holders) {
          if (holders.size() > 1 && holders[0].role == HolderRole::replica) {
            EXPECT_LE(holders.size(), 3u);
            replicated = true;
          }
          sliced = sliced || holders[0].role == HolderRole::slice;
        }
      }
    }
    EXPECT_TRUE(uneven && empty_rank && replicated);
    EXPECT_EQ(sliced, world > 4) << "slicing only where a layer has fewer experts than ranks";
  }
}

}  // namespace
}  // namespace moe
