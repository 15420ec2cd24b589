#pragma once
// A random valid placement, for tests of everything that reads the placement table (moe-place
// --policy random). Per MoE layer, with E experts and W ranks:
//   E >= W: each expert on a random rank (uneven counts), one rank with no expert in the first MoE
//           layer and in about half of the others, and some experts replicated on 2-3 ranks (at
//           least one per layer when two ranks hold experts);
//   E <  W: one rank holds nothing; the others are dealt out over the experts (each at least
//           one); an expert with 2-3 ranks is replicated or sliced, with more it is sliced, into
//           uneven FFN slices (at least one expert per layer is sliced).
// The same seed gives the same placement.
#include <cstdint>

#include "moe/placement.hpp"

namespace moe {

ExpertPlacement random_placement(const ModelConfig& config, int world, uint64_t seed);

}  // namespace moe
