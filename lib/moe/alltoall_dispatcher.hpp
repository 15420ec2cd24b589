#pragma once
// Expert parallelism across ranks with dynamic gating's exchange (Huang et al.): the per-expert
// row counts travel first (a small all-to-all), then a variable-size all-to-all carries exactly
// the routed rows to the ranks computing their experts, and a second one brings the outputs back.
// Nothing is padded or dropped unless the plan itself was built with a capacity (static gating).
//
// Where rows go comes from the placement table: a row of a sliced expert goes to each of its
// slices (partial outputs add up in the combine); the rows of a replicated expert are shared out
// among its replicas by expert_row_share (routed and padding rows alike), so each row is computed
// once, by a rule that depends only on the plan and the table.
//
// Send order: by destination rank, then the destination's local experts in compute order, then
// plan order. Receive order: by micro-batch, source rank, then local expert; a local gather
// regroups a micro-batch's rows by expert for the grouped GEMM. Each micro-batch is one
// all-to-all each way, all of them started at once.
#include <vector>

#include "comm/alltoall.hpp"
#include "moe/dispatcher.hpp"
#include "moe/placement.hpp"

namespace moe {

class AllToAllDispatcher final : public Dispatcher {
 public:
  // `counts` carries the count exchange (any communicator over the same ranks as `alltoall`; its
  // rank is this rank's). `node_of[rank]` is each rank's node, for the replica rule (empty: one node).
  AllToAllDispatcher(Workspace& ws, AllToAll& alltoall, Communicator& counts, const ExpertPlacement& placement,
                     std::vector<int> node_of = {});
  std::string name() const override { return "alltoall-" + alltoall_.name(); }
  void layout(int64_t layer, const DispatchPlan& plan, int64_t d, DispatchHandle& h) override;
  void start_counts(DispatchHandle& h) override;
  void wait_counts(DispatchHandle& h) override;
  void start_payload(DispatchHandle& h, const float* x) override;
  void wait_payload(DispatchHandle& h, int64_t chunk) override;
  void progress(DispatchHandle& h) override;
  void start_combine(DispatchHandle& h, int64_t chunk, const float* expert_out) override;
  void wait_combine(DispatchHandle& h, float* y) override;
  CommStats comm_stats() const override { return alltoall_.stats(); }

 private:
  Workspace& ws_;
  AllToAll& alltoall_;
  Communicator& counts_comm_;
  const ExpertPlacement& placement_;
  std::vector<int> node_of_;
  int rank_;
};

}  // namespace moe
