#pragma once
// The placement table (DESIGN.md, "Parallel layout"): for every MoE layer and expert, the ranks
// that hold it, and for every rank its local experts in compute order. The dispatcher (where rows
// go) and the expert store (what is read) both read this one table.
//
// An expert's holders are either replicas (each a whole expert; a routed row goes to exactly one
// of them, by expert_row_share) or slices (FFN column ranges that partition [0, expert_ffn); every
// row goes to every slice and the partial outputs add up in the combine). A single holder of a
// whole expert is a replica. Ranks may hold any set of experts, uneven counts, or none.
//
// Built from the contiguous default (rank r holds experts [r*E/W, (r+1)*E/W); with E < W, W % E == 0,
// each expert is sliced over W/E consecutive ranks), from whole-expert assignments (what the
// balance planners produce), or from a placement file (moe/placement_file.hpp).
#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.hpp"

namespace moe {

enum class HolderRole { replica, slice };

struct ExpertHolder {
  int rank = 0;
  int64_t ffn_begin = 0;  // FFN columns [ffn_begin, ffn_end) this holder computes
  int64_t ffn_end = 0;
  HolderRole role = HolderRole::replica;
};

// One expert held by a rank, with the columns it holds.
struct LocalExpert {
  int64_t expert = 0;
  int64_t ffn_begin = 0;
  int64_t ffn_end = 0;
  int64_t ffn() const { return ffn_end - ffn_begin; }
};

struct LayerPlacement {
  int64_t num_experts = 0;                             // 0 for dense layers
  std::vector<std::vector<ExpertHolder>> holders;      // [E] holders of each expert
  std::vector<std::vector<LocalExpert>> rank_experts;  // [W] local experts in compute order
};

// Whole-expert assignments: [layer][expert] -> ranks holding a whole replica (empty for dense layers).
using ExpertAssignment = std::vector<std::vector<std::vector<int>>>;

class ExpertPlacement {
 public:
  // The contiguous default. Throws moe::Error naming the layer when its experts cannot be spread
  // over `world` ranks.
  ExpertPlacement(const ModelConfig& config, int world);
  // Whole experts, replicated on the listed ranks.
  ExpertPlacement(const ModelConfig& config, int world, const ExpertAssignment& assignment);
  // Explicit holders per layer ([L][E]); `source` names where they came from in error messages.
  ExpertPlacement(const ModelConfig& config, int world, std::vector<std::vector<std::vector<ExpertHolder>>> holders,
                  const std::string& source);

  const LayerPlacement& layer(int64_t layer) const { return layers_[static_cast<std::size_t>(layer)]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  int world() const { return world_; }
  // The experts `rank` computes in `layer`, in compute order (FFN width descending, then expert id,
  // so experts of one width are consecutive groups of one grouped GEMM).
  const std::vector<LocalExpert>& local_experts(int64_t layer, int rank) const {
    return layers_[static_cast<std::size_t>(layer)].rank_experts[static_cast<std::size_t>(rank)];
  }

 private:
  // Checks the table against the model and the world, then fills rank_experts.
  void finish(const ModelConfig& config, const std::string& source);

  int world_;
  std::vector<LayerPlacement> layers_;
};

// Which holder of a replicated expert computes which of a sender's rows: replicas on the sender's
// node share them, else all replicas do; the rows are split evenly in plan order (the i-th of R
// chosen replicas gets rows [i*n/R, (i+1)*n/R)). `node_of[rank]` is each rank's node (empty: one
// node). The rule depends only on the plan and the table, never on timing. Routed rows
// and padding rows are split separately with this same rule. Returns [begin, end) of the
// `holder`-th holder within n rows (all n for a slice; {0, 0} for a replica not chosen).
std::pair<int64_t, int64_t> expert_row_share(const std::vector<ExpertHolder>& holders, std::size_t holder, int64_t n,
                                             int sender, const std::vector<int>& node_of);

}  // namespace moe
