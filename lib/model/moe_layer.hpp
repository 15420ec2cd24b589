#pragma once
// One MoE layer as route -> plan -> dispatch -> experts -> combine, plus the always-on
// shared/residual MLP (docs/architecture.md, "One MoE layer"). Each part is swappable: the gating
// policy picks the plan, the Dispatcher moves rows in phases with a DispatchHandle, the
// ExpertStore leases weights (told after the count exchange which experts will be leased).
#include <cstdint>
#include <vector>

#include "config/run_config.hpp"
#include "model/step.hpp"
#include "model/weights.hpp"
#include "moe/dispatch_plan.hpp"
#include "moe/dispatcher.hpp"
#include "moe/expert_store.hpp"
#include "moe/router.hpp"

namespace moe {

// What the run report shows per MoE layer, summed over batches.
struct MoeLayerStats {
  int64_t layer = 0;
  std::vector<int64_t> expert_tokens;  // routed rows per expert
  int64_t dropped = 0;
  int64_t padded = 0;
  int64_t rows_computed = 0;       // rows this rank's experts computed (routed and padding)
  uint64_t alltoall_messages = 0;  // payload messages this rank sent (dispatch + combine)
  uint64_t alltoall_bytes = 0;
};

struct GatingPolicy {
  GatingKind kind = GatingKind::dynamic;
  double capacity_factor = 1.25;
};

class MoeLayer {
 public:
  MoeLayer(int64_t layer, int64_t num_experts, GatingPolicy gating, Dispatcher& dispatcher, ExpertStore& experts,
           Workspace& expert_ws);

  // h += MoE(normed) (+ shared MLP). r: normed (slot), weights  rw: h
  // With tp > 1 (parallelism-coordinated): each tp rank routes and dispatches 1/tp of the
  // group's tokens, and an all-gather over tp rebuilds h for all of them.
  void forward(Step& step, const LayerWeights& weights, float* h);
  const MoeLayerStats& stats() const { return stats_; }
  // The last batch's routing on this rank (its block of the tokens when tp > 1), for the trace:
  // routed rows per expert [E] and the top-k expert ids [tokens, k].
  int64_t layer() const { return layer_; }
  const std::vector<int64_t>& last_counts() const { return plan_.counts; }
  const std::vector<int32_t>& last_topk_ids() const { return choice_.ids; }
  // Counts start at zero for every expert, so ranks that never ran a batch report the same shape.
  void reset_stats() {
    stats_ = MoeLayerStats{layer_, std::vector<int64_t>(static_cast<std::size_t>(num_experts_), 0), 0, 0, 0, 0, 0};
  }

 private:
  int64_t layer_;
  int64_t num_experts_;
  GatingPolicy gating_;
  Dispatcher& dispatcher_;
  ExpertStore& experts_;
  Workspace& expert_ws_;  // expert activations [rows, ...]
  RouterChoice choice_;
  DispatchPlan plan_;
  DispatchHandle handle_;
  std::vector<ExpertLease> leases_;
  std::vector<WeightView> in_views_;
  std::vector<WeightView> up_views_;  // split experts: in_views_ then hold the gate rows only
  std::vector<WeightView> out_views_;
  std::vector<int64_t> ffn_;          // [local experts] FFN width of each leased expert (0: idle)
  std::vector<char> split_;           // [local experts] gate and up in two views (mapped)
  std::vector<int64_t> run_offsets_;  // row offsets of one run of equal-width experts
  float* in_ = nullptr;               // expert activations (reserve_experts): MLP input rows,
  float* act_ = nullptr;              // activation, output
  float* out_ = nullptr;
  MoeLayerStats stats_;

  // Routes, dispatches, computes and combines tokens [0, t) of x into y.
  void experts_forward(Step& step, const LayerWeights& weights, const float* x, int64_t t, float* y);
  // The expert activations' buffers for all of handle_'s rows; returns expert_out [rows, d].
  float* reserve_experts(Step& step);
  // expert_out's rows of local experts [first, last) = their MLPs of handle_.expert_rows, one
  // grouped GEMM per FFN width (one in all but hand-made placements).
  void compute_experts(Step& step, int64_t first, int64_t last);
  // The grouped GEMMs of local experts [begin, end), whose leases are held.
  void compute_runs(Step& step, int64_t begin, int64_t end, float* in, float* act, float* out);
  void shared_forward(Step& step, const LayerWeights& weights, const float* x, float* h);
};

}  // namespace moe
