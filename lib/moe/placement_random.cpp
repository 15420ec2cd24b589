#include "moe/placement_random.hpp"

#include <algorithm>
#include <random>

#include "core/error.hpp"

namespace moe {

namespace {

using Holders = std::vector<std::vector<ExpertHolder>>;

int pick(std::mt19937_64& rng, int n) {
  return std::uniform_int_distribution<int>(0, n - 1)(rng);
}

// E >= W: whole experts, some replicated.
Holders whole_experts(std::mt19937_64& rng, int64_t e, int64_t f, int w, bool leave_one_empty) {
  std::vector<int> ranks(static_cast<std::size_t>(w));
  for (int r = 0; r < w; ++r) ranks[static_cast<std::size_t>(r)] = r;
  if (leave_one_empty && w > 1) ranks.erase(ranks.begin() + pick(rng, w));
  const int n = static_cast<int>(ranks.size());
  Holders out(static_cast<std::size_t>(e));
  bool replicated = false;
  for (auto& holders : out) {
    std::shuffle(ranks.begin(), ranks.end(), rng);
    int copies = 1;
    if (n >= 2 && pick(rng, 3) == 0) copies = std::min(n, 2 + pick(rng, 2));
    replicated = replicated || copies > 1;
    for (int c = 0; c < copies; ++c) holders.push_back({ranks[static_cast<std::size_t>(c)], 0, f, HolderRole::replica});
  }
  if (!replicated && n >= 2) {  // at least one replicated expert per layer
    auto& holders = out[static_cast<std::size_t>(pick(rng, static_cast<int>(e)))];
    std::shuffle(ranks.begin(), ranks.end(), rng);
    const int other = ranks[0] != holders[0].rank ? ranks[0] : ranks[1];
    holders.push_back({other, 0, f, HolderRole::replica});
  }
  return out;
}

// E < W: ranks dealt out over the experts; shared experts replicated or sliced unevenly.
Holders dealt_experts(std::mt19937_64& rng, int64_t e, int64_t f, int w) {
  std::vector<int> ranks(static_cast<std::size_t>(w));
  for (int r = 0; r < w; ++r) ranks[static_cast<std::size_t>(r)] = r;
  std::shuffle(ranks.begin(), ranks.end(), rng);
  ranks.pop_back();  // this rank holds nothing
  std::vector<std::vector<int>> groups(static_cast<std::size_t>(e));
  for (std::size_t i = 0; i < ranks.size(); ++i)
    groups[i < groups.size() ? i : static_cast<std::size_t>(pick(rng, static_cast<int>(e)))].push_back(ranks[i]);
  Holders out(static_cast<std::size_t>(e));
  bool sliced = false;
  for (std::size_t x = 0; x < groups.size(); ++x) {
    const std::vector<int>& g = groups[x];
    const auto s = static_cast<int64_t>(g.size());
    const bool last_chance = !sliced && x + 1 == groups.size();
    const bool slice = s > 3 || (s >= 2 && (last_chance || pick(rng, 2) == 0));
    if (!slice || f < s) {
      for (const int r : g) out[x].push_back({r, 0, f, HolderRole::replica});
      continue;
    }
    sliced = true;
    // s - 1 distinct cut points in [1, f - 1]: uneven slices that cover [0, f) exactly.
    std::vector<int64_t> cuts(static_cast<std::size_t>(f - 1));
    for (int64_t c = 0; c < f - 1; ++c) cuts[static_cast<std::size_t>(c)] = c + 1;
    std::shuffle(cuts.begin(), cuts.end(), rng);
    cuts.resize(static_cast<std::size_t>(s - 1));
    cuts.push_back(0);
    cuts.push_back(f);
    std::sort(cuts.begin(), cuts.end());
    for (int64_t i = 0; i < s; ++i)
      out[x].push_back({g[static_cast<std::size_t>(i)], cuts[static_cast<std::size_t>(i)],
                        cuts[static_cast<std::size_t>(i + 1)], HolderRole::slice});
  }
  return out;
}

}  // namespace

ExpertPlacement random_placement(const ModelConfig& config, int world, uint64_t seed) {
  MOE_CHECK(world >= 1, "random placement: world size {} is not positive", world);
  std::mt19937_64 rng(seed);
  std::vector<Holders> layers(static_cast<std::size_t>(config.num_layers));
  bool first = true;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    if (!config.is_moe_layer(i)) continue;
    const int64_t e = config.num_experts(i);
    if (e >= world)
      layers[static_cast<std::size_t>(i)] = whole_experts(rng, e, config.expert_ffn, world, first || pick(rng, 2) == 0);
    else
      layers[static_cast<std::size_t>(i)] = dealt_experts(rng, e, config.expert_ffn, world);
    first = false;
  }
  return ExpertPlacement(config, world, std::move(layers), "random placement (seed " + std::to_string(seed) + ")");
}

}  // namespace moe
