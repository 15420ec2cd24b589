#include "moe/placement.hpp"

#include "core/error.hpp"

namespace moe {

ExpertPlacement::ExpertPlacement(const ModelConfig& config, int rank, int world) : rank_(rank), world_(world) {
  const int64_t w = world;
  layers_.resize(static_cast<std::size_t>(config.num_layers));
  for (int64_t i = 0; i < config.num_layers; ++i) {
    if (!config.is_moe_layer(i)) continue;
    LayerPlacement& p = layers_[static_cast<std::size_t>(i)];
    const int64_t e = config.num_experts(i);
    p.num_experts = e;
    p.rank_first.resize(static_cast<std::size_t>(w));
    p.rank_count.resize(static_cast<std::size_t>(w));
    const int64_t f = config.expert_ffn;
    if (e >= w) {
      for (int64_t r = 0; r < w; ++r) {
        p.rank_first[r] = r * e / w;
        p.rank_count[r] = (r + 1) * e / w - p.rank_first[r];
      }
      p.ffn_end = f;
      continue;
    }
    MOE_CHECK(w % e == 0,
              "layer {} has {} experts, fewer than the {} ranks: expert slicing needs the rank count to be a "
              "multiple of the expert count",
              i, e, w);
    p.slices = w / e;
    MOE_CHECK(f >= p.slices, "layer {}: expert_ffn {} cannot be sliced over {} ranks", i, f, p.slices);
    for (int64_t r = 0; r < w; ++r) {
      p.rank_first[r] = r / p.slices;
      p.rank_count[r] = 1;
    }
    const int64_t slice = rank % p.slices;
    p.ffn_begin = slice * f / p.slices;
    p.ffn_end = (slice + 1) * f / p.slices;
  }
}

std::vector<std::pair<int64_t, int64_t>> ExpertPlacement::local_ranges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const LayerPlacement& p : layers_) {
    if (p.num_experts == 0)
      out.emplace_back(0, 0);
    else
      out.emplace_back(p.rank_first[rank_], p.rank_count[rank_]);
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> ExpertPlacement::ffn_ranges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const LayerPlacement& p : layers_) out.emplace_back(p.ffn_begin, p.ffn_end);
  return out;
}

}  // namespace moe
