#pragma once
// The placement file (docs/formats.md, "Placement file"): a JSON document with `format`,
// `version`, the world size and the model shape it was made for, and per MoE layer, per expert,
// its holders (rank, role, FFN columns). Read on every rank at start-up (`moe.placement: FILE`),
// written by moe-place.
#include <cstdint>
#include <string>
#include <vector>

#include "moe/placement.hpp"

namespace moe {

inline constexpr const char* kPlacementFormat = "moebatch-placement";
inline constexpr int kPlacementVersion = 1;

// Throws moe::Error with one line naming `path` and the entry (layer, expert, holder index) for a
// file that cannot be read, has the wrong format or version, was made for another model shape or
// world size, or does not place every expert validly (placement.hpp).
ExpertPlacement read_placement_file(const std::string& path, const ModelConfig& config, int world);

// Provenance written beside the table (not read back).
struct PlacementProvenance {
  std::string policy;
  uint64_t seed = 0;
  int ranks_per_node = 0;                // 0 = not given
  int replicas = 0;                      // replicate: extra expert slots per rank
  std::vector<std::string> traces = {};  // routing traces the placement was built from (all their batches)
  int64_t trace_batches = 0;             // batches of those traces
};

// Writes `placement` to `path` (replaced if it exists). Throws moe::Error naming the path.
void write_placement_file(const std::string& path, const ExpertPlacement& placement, const ModelConfig& config,
                          const PlacementProvenance& provenance);

}  // namespace moe
