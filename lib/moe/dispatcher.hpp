#pragma once
// The token dispatcher: moves each routed row of x to the ranks that compute its expert and brings
// the expert outputs back, weighted, into token order. It runs in phases, so that other work can
// sit between them (DeepEP's dispatch/combine with a handle, Megatron-Core's token dispatcher):
//
//   layout         send lists from the plan and the placement table
//   counts         start / wait: per-expert row counts travel; afterwards the handle knows the
//                  local experts in compute order, their row ranges and which are active (the
//                  point where an ExpertStore may prefetch)
//   payload        start: the rows of every micro-batch start travelling;
//                  wait(c): micro-batch c's rows are in handle.expert_rows
//   (experts)      the caller computes micro-batch c's expert_out rows from its expert_rows,
//                  calling progress() between GEMMs
//   combine        start(c): micro-batch c's outputs start back;
//                  wait: all are back and scatter-added, weighted, into y
//
// Micro-batches (DispatchHandle::chunks, the same on every rank) split each rank's local experts
// into contiguous ranges: while micro-batch c's experts compute, the rows of c + 1 and the outputs
// of c - 1 travel (where the all-to-all is non-blocking: AllToAll::overlaps). The answer does not
// depend on the split: each expert's GEMMs see the same rows, and the combine adds every output
// in send order once all are back.
//
// Everything that combine needs from dispatch lives in the DispatchHandle; a dispatcher keeps no
// per-call state of its own. One handle may be in flight per dispatcher at a time (its device
// buffers are the dispatcher's workspace slots). Variants differ only in how rows travel; each
// lives in its own file behind this interface.
#include <cstdint>
#include <string>
#include <vector>

#include "backend/workspace.hpp"
#include "comm/alltoall.hpp"
#include "comm/communicator.hpp"
#include "moe/dispatch_plan.hpp"

namespace moe {

// First local expert (compute order) of micro-batch c when a rank's `local` experts are split
// into `chunks`; every rank applies it to every rank's list, so senders and receivers agree.
inline int64_t chunk_first_expert(int64_t local, int64_t chunks, int64_t c) {
  return c * local / chunks;
}

struct DispatchHandle {
  enum class Phase { empty, layout, counts_started, counts, exchanging, combine_started };

  // --- what the caller reads ---------------------------------------------------------------------
  int64_t layer = -1;
  int64_t d = 0;
  // After wait_counts: this rank's experts in compute order (global ids), and 2 * local + 1 row
  // offsets: expert x's routed rows are [local_offsets[2x], local_offsets[2x+1]) and its padding
  // rows (static gating) follow up to local_offsets[2x+2]. Routed rows come in the same order
  // whatever the padding, and the two parts are separate GEMM groups, so static gating that drops
  // nothing computes exactly dynamic gating's products.
  std::vector<int64_t> local_experts;
  std::vector<int64_t> local_offsets;
  // After wait_payload: the rows [num_rows(), d], grouped as local_offsets says (workspace memory).
  float* expert_rows = nullptr;

  // Micro-batches (set by layout): chunk c holds local experts [chunk_experts[c],
  // chunk_experts[c + 1]) (after wait_counts) and their rows [chunk_rows(c), chunk_rows(c + 1)).
  int64_t chunks = 1;
  std::vector<int64_t> chunk_experts;

  int64_t num_rows() const { return local_offsets.empty() ? 0 : local_offsets.back(); }
  int64_t chunk_rows(int64_t c) const { return local_offsets[2 * chunk_experts[c]]; }
  // Local experts with at least one row (routed or padding), in compute order.
  std::vector<int64_t> active_experts() const;

  // --- the dispatcher's bookkeeping, carried from dispatch to combine -----------------------------
  Phase phase = Phase::empty;
  const DispatchPlan* plan = nullptr;
  std::vector<int32_t> send_token;  // [sent rows] token of each sent row
  std::vector<float> send_weight;   // [sent rows] its gate weight
  std::vector<int64_t> counts_out;  // per destination, per its local expert: routed, padding
  std::vector<int64_t> counts_in;   // per source, per local expert: routed, padding
  std::vector<std::size_t> c_send_bytes, c_send_displs, c_recv_bytes, c_recv_displs;
  // [chunks * world]: chunk c's block for/from rank p at [c * world + p]. Sent rows are in
  // (destination, its local expert, part) order, so a chunk's rows for p are one run of p's
  // block; received rows are in (chunk, source, local expert, part) order.
  std::vector<std::size_t> send_bytes, send_displs, recv_bytes, recv_displs;
  std::vector<int64_t> recv_chunk_rows;  // [chunks + 1] received rows before chunk c
  std::vector<int32_t> by_expert;        // [received rows] received row of each expert-ordered row
  std::vector<int32_t> by_source;        // [received rows] expert-ordered row of each received row
  std::vector<AllToAllRequest> payload_requests, combine_requests;  // [chunks]
  int64_t arrived = 0;                                              // chunks whose payload wait_payload has returned
  int64_t returning = 0;                                            // chunks whose combine has started
  std::vector<int64_t> cursor;                                      // [groups] scratch of wait_counts
  int64_t num_sent = 0;
  int32_t* send_token_dev = nullptr;  // workspace copies of send_token / send_weight
  float* send_weight_dev = nullptr;
  int32_t* by_expert_dev = nullptr;  // and of by_expert / by_source
  int32_t* by_source_dev = nullptr;
  float* received = nullptr;    // rows in receive order; the outputs go back from the same rows
  const float* home = nullptr;  // outputs back in send order

  // Throws moe::Error when a phase is called out of order.
  void expect(Phase want, const char* call) const;
  // And when a micro-batch's phase comes out of order (chunk must be `want`).
  void expect_chunk(int64_t chunk, int64_t want, const char* call) const;
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual std::string name() const = 0;

  // Micro-batches per exchange from now on: the same on every rank (default 1).
  void set_chunks(int64_t chunks);
  int64_t chunks() const { return chunks_; }

  // Collective phases: every rank that holds experts of the layer takes part (all ranks for
  // AllToAllDispatcher). r: plan (kept until wait_combine)
  virtual void layout(int64_t layer, const DispatchPlan& plan, int64_t d, DispatchHandle& h) = 0;
  virtual void start_counts(DispatchHandle& h) = 0;
  virtual void wait_counts(DispatchHandle& h) = 0;
  // r: x [plan's tokens, d] (read until the last wait_payload)
  virtual void start_payload(DispatchHandle& h, const float* x) = 0;
  // Chunks in order, each once: afterwards chunk c's rows of h.expert_rows are there.
  virtual void wait_payload(DispatchHandle& h, int64_t chunk) = 0;
  // Lets started transfers advance; call it between GEMMs.
  virtual void progress(DispatchHandle& /*h*/) {}
  // Chunks in order, each after its wait_payload. r: chunk c's rows of expert_out (until wait_combine)
  virtual void start_combine(DispatchHandle& h, int64_t chunk, const float* expert_out) = 0;
  // y[token] += weight * output row, for every row of the plan (partial outputs of sliced experts
  // add up here); the handle is empty afterwards. rw: y
  virtual void wait_combine(DispatchHandle& h, float* y) = 0;

  // Payload messages and bytes this rank has sent so far (dispatch and combine).
  virtual CommStats comm_stats() const { return {}; }

  // Every dispatch phase in order, without overlap (tests and benchmarks).
  void dispatch(int64_t layer, const DispatchPlan& plan, const float* x, int64_t d, DispatchHandle& h);
  void combine(DispatchHandle& h, const float* expert_out, float* y);

 protected:
  int64_t chunks_ = 1;
};

// Every expert of the layer is on this rank: dispatch is a gather, combine a scatter-add. Nothing
// travels, so there is one micro-batch whatever set_chunks says.
class LocalDispatcher final : public Dispatcher {
 public:
  explicit LocalDispatcher(Workspace& ws) : ws_(ws) {}
  std::string name() const override { return "local"; }
  void layout(int64_t layer, const DispatchPlan& plan, int64_t d, DispatchHandle& h) override;
  void start_counts(DispatchHandle& h) override;
  void wait_counts(DispatchHandle& h) override;
  void start_payload(DispatchHandle& h, const float* x) override;
  void wait_payload(DispatchHandle& h, int64_t chunk) override;
  void start_combine(DispatchHandle& h, int64_t chunk, const float* expert_out) override;
  void wait_combine(DispatchHandle& h, float* y) override;

 private:
  Workspace& ws_;
};

}  // namespace moe
