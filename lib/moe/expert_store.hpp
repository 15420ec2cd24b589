#pragma once
// The only way to reach expert weights. The forward pass asks for an expert right before it
// computes with it, so a store may keep all local experts resident (ResidentExpertStore) or only
// a bounded cache of them (expert buffering, a later store) without changing callers.
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "io/checkpoint.hpp"

namespace moe {

// One expert's MLP: in [mlp_in_rows(F), d] (gate rows then up rows for swiglu), out [d, F].
struct ExpertWeights {
  WeightView in;
  WeightView out;
};

struct ExpertStoreStats {
  uint64_t acquires = 0;
  uint64_t misses = 0;  // acquires that had to load the expert
};

class ExpertStore {
 public:
  virtual ~ExpertStore() = default;
  // Experts of `layer` this rank computes: global ids [first_expert, first_expert + count).
  virtual int64_t first_expert(int64_t layer) const = 0;
  virtual int64_t num_local_experts(int64_t layer) const = 0;
  // The FFN width of this rank's experts in `layer`: expert_ffn, or its slice under expert slicing.
  virtual int64_t local_ffn(int64_t layer) const = 0;
  // The weights of global expert `expert` of `layer`, valid until the next acquire on this layer.
  virtual ExpertWeights acquire(int64_t layer, int64_t expert) = 0;
  virtual std::size_t resident_bytes() const = 0;
  const ExpertStoreStats& stats() const { return stats_; }

 protected:
  ExpertStoreStats stats_;
};

// Reads the experts [first, first + count) of every MoE layer into backend memory at start-up,
// only their FFN columns [ffn_begin, ffn_end) (all of them unless experts are sliced).
class ResidentExpertStore final : public ExpertStore {
 public:
  // expert_ranges[layer] = {first, count}; ffn_ranges[layer] = {ffn_begin, ffn_end}, or empty for
  // whole experts.
  ResidentExpertStore(CheckpointReader& ckpt, Backend& backend,
                      const std::vector<std::pair<int64_t, int64_t>>& expert_ranges,
                      const std::vector<std::pair<int64_t, int64_t>>& ffn_ranges = {});
  int64_t first_expert(int64_t layer) const override { return layers_[static_cast<std::size_t>(layer)].first; }
  int64_t num_local_experts(int64_t layer) const override { return layers_[static_cast<std::size_t>(layer)].count; }
  int64_t local_ffn(int64_t layer) const override { return layers_[static_cast<std::size_t>(layer)].ffn; }
  ExpertWeights acquire(int64_t layer, int64_t expert) override;
  std::size_t resident_bytes() const override { return bytes_; }

 private:
  struct Layer {
    int64_t first = 0;
    int64_t count = 0;
    int64_t ffn = 0;      // F: columns of the slice held
    int64_t in_rows = 0;  // mlp_in_rows(F)
    DeviceBuffer in;      // [count, mlp_in_rows(F), d]
    DeviceBuffer out;     // [count, d, F]
    DType dtype = DType::f32;
  };
  std::vector<Layer> layers_;
  int64_t hidden_ = 0;
  std::size_t bytes_ = 0;
};

// All experts of every layer on this rank (one rank, or a rank that holds everything).
std::vector<std::pair<int64_t, int64_t>> all_experts(const ModelConfig& config);

}  // namespace moe
