#include "core/error.hpp"
#include "moe/dispatcher.hpp"

namespace moe {

namespace slot {
enum : std::size_t { rows = 0, weights, expert_rows };
}

void LocalDispatcher::layout(int64_t layer, const DispatchPlan& plan, int64_t d, DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::empty, "layout");
  h.layer = layer;
  h.d = d;
  h.plan = &plan;
  h.chunks = 1;
  const int64_t n = plan.num_rows();
  h.num_sent = n;
  h.send_token_dev = ws_.get<int32_t>(slot::rows, static_cast<std::size_t>(n));
  h.send_weight_dev = ws_.get<float>(slot::weights, static_cast<std::size_t>(n));
  Backend& be = ws_.backend();
  be.copy_to_device(h.send_token_dev, plan.row_token.data(), sizeof(int32_t) * static_cast<std::size_t>(n));
  be.copy_to_device(h.send_weight_dev, plan.row_weight.data(), sizeof(float) * static_cast<std::size_t>(n));
  h.phase = DispatchHandle::Phase::layout;
}

void LocalDispatcher::start_counts(DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::layout, "start_counts");
  h.phase = DispatchHandle::Phase::counts_started;
}

void LocalDispatcher::wait_counts(DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::counts_started, "wait_counts");
  const DispatchPlan& plan = *h.plan;
  const int64_t experts = plan.num_experts;
  h.local_experts.resize(static_cast<std::size_t>(experts));
  h.local_offsets.resize(static_cast<std::size_t>(2 * experts + 1));
  for (int64_t e = 0; e < experts; ++e) {
    h.local_experts[e] = e;
    h.local_offsets[2 * e] = plan.expert_offsets[e];
    h.local_offsets[2 * e + 1] = plan.expert_offsets[e] + plan.kept[e];
  }
  h.local_offsets[2 * experts] = plan.num_rows();
  h.chunk_experts = {0, experts};
  h.phase = DispatchHandle::Phase::counts;
}

void LocalDispatcher::start_payload(DispatchHandle& h, const float* x) {
  h.expect(DispatchHandle::Phase::counts, "start_payload");
  const int64_t n = h.num_sent;
  h.expert_rows = ws_.get<float>(slot::expert_rows, static_cast<std::size_t>(n * h.d));
  ws_.backend().gather_rows(x, h.send_token_dev, n, h.d, h.expert_rows);
  h.arrived = h.returning = 0;
  h.phase = DispatchHandle::Phase::exchanging;
}

void LocalDispatcher::wait_payload(DispatchHandle& h, int64_t chunk) {
  h.expect_chunk(chunk, h.arrived, "wait_payload");
  ++h.arrived;
}

void LocalDispatcher::start_combine(DispatchHandle& h, int64_t chunk, const float* expert_out) {
  h.expect_chunk(chunk, h.returning, "start_combine");
  MOE_CHECK(chunk < h.arrived, "dispatcher (layer {}): start_combine of micro-batch {} before its wait_payload",
            h.layer, chunk);
  h.home = expert_out;  // rows are already in plan order
  ++h.returning;
  h.phase = DispatchHandle::Phase::combine_started;
}

void LocalDispatcher::wait_combine(DispatchHandle& h, float* y) {
  h.expect(DispatchHandle::Phase::combine_started, "wait_combine");
  ws_.backend().scatter_add_rows(h.home, h.send_token_dev, h.send_weight_dev, h.num_sent, h.d, y);
  h.phase = DispatchHandle::Phase::empty;
}

}  // namespace moe
