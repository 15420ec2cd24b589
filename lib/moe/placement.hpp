#pragma once
// Where each expert lives (DESIGN.md, "Parallel layout"): expert parallelism over all world ranks.
// A layer with E >= W experts gives rank r the contiguous range [r*E/W, (r+1)*E/W); a layer with
// fewer experts than ranks (E < W, W % E == 0) slices each expert's FFN over W/E consecutive ranks
// (DeepSpeed-MoE's expert slicing): rank r holds expert r / s, FFN columns of slice r % s, and the
// slices' partial outputs are summed in the combine.
#include <cstdint>
#include <vector>

#include "config/model_config.hpp"

namespace moe {

struct LayerPlacement {
  int64_t num_experts = 0;
  int64_t slices = 1;               // ranks per expert (1 unless E < W)
  std::vector<int64_t> rank_first;  // [W]: rank p holds experts [rank_first[p], rank_first[p] + rank_count[p])
  std::vector<int64_t> rank_count;  // [W]
  int64_t ffn_begin = 0;            // this rank's FFN slice of its experts
  int64_t ffn_end = 0;
};

class ExpertPlacement {
 public:
  // Throws moe::Error naming the layer when its experts cannot be spread over `world` ranks.
  ExpertPlacement(const ModelConfig& config, int rank, int world);

  // Placement of MoE layer `layer` (empty for dense layers).
  const LayerPlacement& layer(int64_t layer) const { return layers_[static_cast<std::size_t>(layer)]; }
  // {first expert, count} this rank holds in each layer (what ResidentExpertStore reads).
  std::vector<std::pair<int64_t, int64_t>> local_ranges() const;
  // The FFN column range of this rank's experts in each layer.
  std::vector<std::pair<int64_t, int64_t>> ffn_ranges() const;
  int rank() const { return rank_; }
  int world() const { return world_; }

 private:
  int rank_;
  int world_;
  std::vector<LayerPlacement> layers_;
};

}  // namespace moe
