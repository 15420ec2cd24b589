#include "moe/placement.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moe {

namespace {

using Holders = std::vector<std::vector<ExpertHolder>>;  // [E]

// The contiguous default of one layer (see placement.hpp).
Holders contiguous_layer(int64_t layer, int64_t e, int64_t f, int64_t w) {
  Holders out(static_cast<std::size_t>(e));
  if (e >= w) {
    for (int64_t r = 0; r < w; ++r)
      for (int64_t x = r * e / w; x < (r + 1) * e / w; ++x)
        out[static_cast<std::size_t>(x)].push_back({static_cast<int>(r), 0, f, HolderRole::replica});
    return out;
  }
  MOE_CHECK(w % e == 0,
            "layer {} has {} experts, fewer than the {} ranks: expert slicing needs the rank count to be a "
            "multiple of the expert count",
            layer, e, w);
  const int64_t slices = w / e;
  MOE_CHECK(f >= slices, "layer {}: expert_ffn {} cannot be sliced over {} ranks", layer, f, slices);
  for (int64_t r = 0; r < w; ++r) {
    const int64_t s = r % slices;
    out[static_cast<std::size_t>(r / slices)].push_back({static_cast<int>(r), s * f / slices, (s + 1) * f / slices,
                                                         slices > 1 ? HolderRole::slice : HolderRole::replica});
  }
  return out;
}

const char* role_name(HolderRole role) {
  return role == HolderRole::slice ? "slice" : "replica";
}

// One line per defect, naming the source and the entry (layer, expert, holder index).
void check_expert(const std::string& source, int64_t layer, int64_t expert, std::vector<ExpertHolder> holders,
                  int64_t f, int world) {
  MOE_CHECK(!holders.empty(), "{}: layer {} expert {}: no rank holds it", source, layer, expert);
  std::vector<int> ranks;
  for (std::size_t h = 0; h < holders.size(); ++h) {
    const ExpertHolder& x = holders[h];
    MOE_CHECK(x.rank >= 0 && x.rank < world, "{}: layer {} expert {} holder {}: rank {} is out of range [0, {})",
              source, layer, expert, h, x.rank, world);
    MOE_CHECK(std::find(ranks.begin(), ranks.end(), x.rank) == ranks.end(),
              "{}: layer {} expert {} holder {}: rank {} holds this expert twice", source, layer, expert, h, x.rank);
    ranks.push_back(x.rank);
    MOE_CHECK(x.role == holders[0].role,
              "{}: layer {} expert {} holder {}: a {} among {}s (an expert's holders are all "
              "replicas or all slices)",
              source, layer, expert, h, role_name(x.role), role_name(holders[0].role));
    if (x.role == HolderRole::replica)
      MOE_CHECK(x.ffn_begin == 0 && x.ffn_end == f,
                "{}: layer {} expert {} holder {}: a replica holds FFN columns [{}, {}), not the whole expert [0, {})",
                source, layer, expert, h, x.ffn_begin, x.ffn_end, f);
    else
      MOE_CHECK(0 <= x.ffn_begin && x.ffn_begin < x.ffn_end && x.ffn_end <= f,
                "{}: layer {} expert {} holder {}: slice [{}, {}) is empty or outside the FFN [0, {})", source, layer,
                expert, h, x.ffn_begin, x.ffn_end, f);
  }
  if (holders[0].role == HolderRole::replica) return;
  // Slices must cover the FFN exactly: sorted by first column, each starts where the last ended.
  std::vector<std::size_t> order(holders.size());
  for (std::size_t h = 0; h < order.size(); ++h) order[h] = h;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return holders[a].ffn_begin < holders[b].ffn_begin; });
  int64_t covered = 0;
  for (const std::size_t h : order) {
    MOE_CHECK(holders[h].ffn_begin == covered,
              "{}: layer {} expert {} holder {}: slice [{}, {}) leaves {} FFN columns [{}, {})", source, layer, expert,
              h, holders[h].ffn_begin, holders[h].ffn_end, holders[h].ffn_begin > covered ? "a gap at" : "overlapping",
              std::min(covered, holders[h].ffn_begin), std::max(covered, holders[h].ffn_begin));
    covered = holders[h].ffn_end;
  }
  MOE_CHECK(covered == f, "{}: layer {} expert {}: slices cover FFN columns [0, {}), not [0, {})", source, layer,
            expert, covered, f);
}

}  // namespace

ExpertPlacement::ExpertPlacement(const ModelConfig& config, int world) : world_(world) {
  layers_.resize(static_cast<std::size_t>(config.num_layers));
  for (int64_t i = 0; i < config.num_layers; ++i)
    if (config.is_moe_layer(i))
      layers_[static_cast<std::size_t>(i)].holders =
          contiguous_layer(i, config.num_experts(i), config.expert_ffn, world);
  finish(config, "contiguous placement");
}

ExpertPlacement::ExpertPlacement(const ModelConfig& config, int world, const ExpertAssignment& assignment)
    : world_(world) {
  MOE_CHECK(static_cast<int64_t>(assignment.size()) == config.num_layers,
            "expert assignment: {} layers, the model has {}", assignment.size(), config.num_layers);
  layers_.resize(assignment.size());
  for (std::size_t i = 0; i < assignment.size(); ++i)
    for (const std::vector<int>& ranks : assignment[i]) {
      std::vector<ExpertHolder>& holders = layers_[i].holders.emplace_back();
      for (const int r : ranks) holders.push_back({r, 0, config.expert_ffn, HolderRole::replica});
    }
  finish(config, "expert assignment");
}

ExpertPlacement::ExpertPlacement(const ModelConfig& config, int world, std::vector<Holders> holders,
                                 const std::string& source)
    : world_(world) {
  MOE_CHECK(static_cast<int64_t>(holders.size()) == config.num_layers, "{}: {} layers, the model has {}", source,
            holders.size(), config.num_layers);
  layers_.resize(holders.size());
  for (std::size_t i = 0; i < holders.size(); ++i) layers_[i].holders = std::move(holders[i]);
  finish(config, source);
}

void ExpertPlacement::finish(const ModelConfig& config, const std::string& source) {
  MOE_CHECK(world_ >= 1, "{}: world size {} is not positive", source, world_);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    LayerPlacement& p = layers_[static_cast<std::size_t>(i)];
    const int64_t e = config.is_moe_layer(i) ? config.num_experts(i) : 0;
    MOE_CHECK(static_cast<int64_t>(p.holders.size()) == e, "{}: layer {} places {} experts, the model has {}", source,
              i, p.holders.size(), e);
    p.num_experts = e;
    p.rank_experts.assign(static_cast<std::size_t>(world_), {});
    for (int64_t x = 0; x < e; ++x) {
      const std::vector<ExpertHolder>& holders = p.holders[static_cast<std::size_t>(x)];
      check_expert(source, i, x, holders, config.expert_ffn, world_);
      for (const ExpertHolder& h : holders)
        p.rank_experts[static_cast<std::size_t>(h.rank)].push_back({x, h.ffn_begin, h.ffn_end});
    }
    for (std::vector<LocalExpert>& local : p.rank_experts)
      std::stable_sort(local.begin(), local.end(),
                       [](const LocalExpert& a, const LocalExpert& b) { return a.ffn() > b.ffn(); });
  }
}

std::pair<int64_t, int64_t> expert_row_share(const std::vector<ExpertHolder>& holders, std::size_t holder, int64_t n,
                                             int sender, const std::vector<int>& node_of) {
  if (holders[holder].role == HolderRole::slice) return {0, n};
  const auto node = [&](int rank) { return node_of.empty() ? 0 : node_of[static_cast<std::size_t>(rank)]; };
  const bool near_exists =
      std::any_of(holders.begin(), holders.end(), [&](const ExpertHolder& h) { return node(h.rank) == node(sender); });
  const auto chosen = [&](const ExpertHolder& h) { return !near_exists || node(h.rank) == node(sender); };
  if (!chosen(holders[holder])) return {0, 0};
  int64_t index = 0, count = 0;
  for (std::size_t h = 0; h < holders.size(); ++h) {
    if (!chosen(holders[h])) continue;
    if (h < holder) ++index;
    ++count;
  }
  return {index * n / count, (index + 1) * n / count};
}

}  // namespace moe
