#pragma once
// What a rank will hold: its shard of the model and the per-step workspace for the largest batch.
// Checked on every node before anything large is allocated (runtime/engine.cpp): the ranks of a
// node share its memory, so their needs are summed against what the node has available.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "core/dtype.hpp"
#include "moe/placement.hpp"

namespace moe {

struct MemoryEstimate {
  double model_bytes = 0;      // this rank's weights: its experts, its tp slice of the rest
  double workspace_bytes = 0;  // activations, dispatch buffers, scratch and host staging
};

// rank: whose experts (placement) are counted; layer_slots: per layer, the expert slots of a
// bounded expert cache (empty: every local expert resident); tp: ranks sharing the dense
// weights; max_tokens / max_len: the largest batch and sequence; weight_bytes: what the backend
// holds per weight (weight_bytes_held()).
MemoryEstimate estimate_memory(const ModelConfig& config, const ExpertPlacement& placement, int rank,
                               const std::vector<int64_t>& layer_slots, int64_t tp, int64_t max_tokens, int64_t max_len,
                               int threads, double weight_bytes);

// Bytes a backend holds per weight of this dtype: its size (weights stay as stored: f32 4, bf16
// 2), plus a packed copy where the CPU's bf16 kernel keeps one (oneDNN's blocked layout: 2 more).
double weight_bytes_held(DType dtype, const std::string& backend);

// Collective over `world`: sums the estimates of the ranks of each node and throws one line
// ("need X, available Y") on every rank when a node cannot hold its ranks' share.
void require_memory_on_nodes(const MemoryEstimate& mine, MPI_Comm world);

}  // namespace moe
