// ExpertPlacement: every expert of every layer is held by exactly the ranks the dispatcher sends
// its rows to, ranges are contiguous and balanced, and sliced experts' FFN slices partition the
// columns. Checked for random expert counts and world sizes.
#include "moe/placement.hpp"

#include <gtest/gtest.h>

#include <random>

#include "core/error.hpp"

namespace moe {
namespace {

ModelConfig config_with(std::vector<int64_t> experts, int64_t ffn) {
  ModelConfig c;
  c.num_layers = static_cast<int64_t>(experts.size());
  c.layer_num_experts = std::move(experts);
  c.expert_ffn = ffn;
  return c;
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
    for (std::size_t l = 0; l < experts.size(); ++l) {
      const int64_t e_count = experts[l];
      if (e_count == 0) continue;
      // held[e][col]: how many ranks hold column col of expert e.
      std::vector<std::vector<int>> held(static_cast<std::size_t>(e_count),
                                         std::vector<int>(static_cast<std::size_t>(ffn), 0));
      int64_t min_count = e_count, max_count = 0;
      for (int r = 0; r < world; ++r) {
        const ExpertPlacement p(c, r, world);
        const LayerPlacement& lp = p.layer(static_cast<int64_t>(l));
        ASSERT_EQ(lp.num_experts, e_count);
        const auto [first, count] = p.local_ranges()[l];
        const auto [f0, f1] = p.ffn_ranges()[l];
        // What this rank holds is what every other rank's placement says it holds.
        ASSERT_EQ(first, lp.rank_first[r]);
        ASSERT_EQ(count, lp.rank_count[r]);
        min_count = std::min(min_count, count);
        max_count = std::max(max_count, count);
        for (int64_t e = first; e < first + count; ++e)
          for (int64_t col = f0; col < f1; ++col) ++held[e][col];
        if (r > 0) {
          const ExpertPlacement prev(c, r - 1, world);
          EXPECT_GE(lp.rank_first[r], prev.layer(static_cast<int64_t>(l)).rank_first[r - 1]) << "ranges are ordered";
        }
      }
      for (int64_t e = 0; e < e_count; ++e)
        for (int64_t col = 0; col < ffn; ++col)
          ASSERT_EQ(held[e][col], 1) << "layer " << l << " expert " << e << " column " << col << ", world " << world;
      if (e_count >= world) {
        EXPECT_LE(max_count - min_count, 1) << "balanced ranges";
      } else {
        EXPECT_EQ(ExpertPlacement(c, 0, world).layer(static_cast<int64_t>(l)).slices, world / e_count);
      }
    }
  }
}

TEST(Placement, RefusesExpertsThatCannotBeSliced) {
  const ModelConfig c = config_with({0, 3}, 64);
  try {
    ExpertPlacement p(c, 0, 4);
    FAIL() << "3 experts over 4 ranks must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1 has 3 experts"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ExpertPlacement(config_with({2}, 3), 0, 8), Error);  // 4 slices of 3 columns
}

}  // namespace
}  // namespace moe
