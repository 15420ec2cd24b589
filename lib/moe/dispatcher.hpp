#pragma once
// The token dispatcher: moves each routed row of x to the rank that holds its expert
// (dispatch) and brings the expert outputs back, weighted, into token order (combine).
// Variants differ only in how rows travel; each lives in its own file behind this interface.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/workspace.hpp"
#include "comm/communicator.hpp"
#include "moe/dispatch_plan.hpp"

namespace moe {

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual std::string name() const = 0;
  // x [T, d] -> expert_rows [rows, d] grouped by this rank's experts; local_offsets (host) gets
  // 2 * num_local_experts + 1 row offsets: local expert x's routed rows are
  // [local_offsets[2x], local_offsets[2x+1]) and its padding rows (static gating) follow up to
  // local_offsets[2x+2]. Routed rows come in the same order whatever the padding, and the two
  // parts are separate GEMM groups, so static gating that drops nothing computes exactly dynamic
  // gating's products (a GEMM's rounding can depend on its row count). Returns the rows.
  // r: x  w: expert_rows (from the workspace)
  // Collective over every rank that holds experts of `layer` (all ranks for AllToAllDispatcher).
  virtual int64_t dispatch(int64_t layer, const DispatchPlan& plan, const float* x, int64_t d, float*& expert_rows,
                           std::vector<int64_t>& local_offsets) = 0;
  // y[token] += weight * expert_out[row] for every row of the plan (partial outputs of sliced
  // experts add up here). r: expert_out  rw: y
  virtual void combine(int64_t layer, const DispatchPlan& plan, const float* expert_out, int64_t d, float* y) = 0;
  // Payload messages and bytes this rank has sent so far (dispatch and combine).
  virtual CommStats comm_stats() const { return {}; }
};

// Every expert of the layer is on this rank: dispatch is a gather, combine a scatter-add.
class LocalDispatcher final : public Dispatcher {
 public:
  explicit LocalDispatcher(Workspace& ws) : ws_(ws) {}
  std::string name() const override { return "local"; }
  int64_t dispatch(int64_t layer, const DispatchPlan& plan, const float* x, int64_t d, float*& expert_rows,
                   std::vector<int64_t>& local_offsets) override;
  void combine(int64_t layer, const DispatchPlan& plan, const float* expert_out, int64_t d, float* y) override;

 private:
  Workspace& ws_;
  int32_t* rows_ = nullptr;   // plan.row_token on the backend
  float* weights_ = nullptr;  // plan.row_weight on the backend
};

}  // namespace moe
