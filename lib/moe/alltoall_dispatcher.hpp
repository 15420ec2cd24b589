#pragma once
// Expert parallelism across ranks with dynamic gating's exchange (Huang et al.): the per-expert
// row counts travel first (a small all-to-all), then a variable-size all-to-all carries exactly
// the routed rows to the ranks holding their experts, and a second one brings the outputs back.
// Nothing is padded or dropped unless the plan itself was built with a capacity (static gating).
//
// Send order: by destination rank, then by expert, then plan order; a row for a sliced expert is
// sent to each of its slices, and their partial outputs add up in the combine. Receive order: by
// source rank, then local expert; a local gather regroups rows by expert for the grouped GEMM.
#include <vector>

#include "comm/alltoall.hpp"
#include "moe/dispatcher.hpp"
#include "moe/placement.hpp"

namespace moe {

class AllToAllDispatcher final : public Dispatcher {
 public:
  // `counts` carries the count exchange (any communicator over the same ranks as `alltoall`).
  AllToAllDispatcher(Workspace& ws, AllToAll& alltoall, Communicator& counts, const ExpertPlacement& placement);
  std::string name() const override { return "alltoall-" + alltoall_.name(); }
  int64_t dispatch(int64_t layer, const DispatchPlan& plan, const float* x, int64_t d, float*& expert_rows,
                   std::vector<int64_t>& local_offsets) override;
  void combine(int64_t layer, const DispatchPlan& plan, const float* expert_out, int64_t d, float* y) override;
  CommStats comm_stats() const override { return alltoall_.stats(); }

 private:
  // Byte counts and displacements for rows of `d` floats.
  static void to_bytes(const std::vector<int64_t>& rows, int64_t d, std::vector<std::size_t>& bytes,
                       std::vector<std::size_t>& displs);

  Workspace& ws_;
  AllToAll& alltoall_;
  Communicator& counts_comm_;
  const ExpertPlacement& placement_;
  // Host bookkeeping of the current layer, reused from call to call.
  std::vector<int32_t> send_token_;  // [sent rows] token of each sent row
  std::vector<float> send_weight_;   // [sent rows] its gate weight
  std::vector<int64_t> send_rows_;   // [W] rows sent to each rank
  std::vector<int64_t> recv_rows_;   // [W] rows received from each rank
  std::vector<int64_t> counts_out_;  // per destination, per its local expert: routed, padding
  std::vector<int64_t> counts_in_;   // per source, per local expert: routed, padding
  std::vector<std::size_t> c_send_bytes_, c_send_displs_, c_recv_bytes_, c_recv_displs_;
  std::vector<std::size_t> send_bytes_, send_displs_, recv_bytes_, recv_displs_;
  std::vector<int32_t> by_expert_;  // [received rows] received row of each expert-ordered row
  std::vector<int32_t> by_source_;  // [received rows] expert-ordered row of each received row
  std::vector<int64_t> cursor_;     // [2 * local experts] scratch
  int64_t num_sent_ = 0;
  int64_t num_received_ = 0;
  int32_t* send_token_dev_ = nullptr;
  float* send_weight_dev_ = nullptr;
};

}  // namespace moe
