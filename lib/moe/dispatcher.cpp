#include "moe/dispatcher.hpp"

#include "core/error.hpp"

namespace moe {

namespace {
const char* phase_name(DispatchHandle::Phase p) {
  switch (p) {
    case DispatchHandle::Phase::empty:
      return "nothing (or wait_combine)";
    case DispatchHandle::Phase::layout:
      return "layout";
    case DispatchHandle::Phase::counts_started:
      return "start_counts";
    case DispatchHandle::Phase::counts:
      return "wait_counts";
    case DispatchHandle::Phase::exchanging:
      return "start_payload";
    case DispatchHandle::Phase::combine_started:
      return "the last start_combine";
  }
  return "?";
}
}  // namespace

std::vector<int64_t> DispatchHandle::active_experts() const {
  std::vector<int64_t> out;
  for (std::size_t x = 0; x < local_experts.size(); ++x)
    if (local_offsets[2 * x + 2] > local_offsets[2 * x]) out.push_back(local_experts[x]);
  return out;
}

void DispatchHandle::expect_chunk(int64_t chunk, int64_t want, const char* call) const {
  expect(Phase::exchanging, call);
  MOE_CHECK(chunk == want, "dispatcher (layer {}): {} for micro-batch {}, expected {} (of {})", layer, call, chunk,
            want, chunks);
}

void DispatchHandle::expect(Phase want, const char* call) const {
  MOE_CHECK(phase == want, "dispatcher (layer {}): {} called after {}, expected after {}", layer, call,
            phase_name(phase), phase_name(want));
}

void Dispatcher::set_chunks(int64_t chunks) {
  MOE_CHECK(chunks >= 1, "dispatcher: {} micro-batches (need at least 1)", chunks);
  chunks_ = chunks;
}

void Dispatcher::dispatch(int64_t layer, const DispatchPlan& plan, const float* x, int64_t d, DispatchHandle& h) {
  layout(layer, plan, d, h);
  start_counts(h);
  wait_counts(h);
  start_payload(h, x);
  for (int64_t c = 0; c < h.chunks; ++c) wait_payload(h, c);
}

void Dispatcher::combine(DispatchHandle& h, const float* expert_out, float* y) {
  for (int64_t c = 0; c < h.chunks; ++c) start_combine(h, c, expert_out);
  wait_combine(h, y);
}

}  // namespace moe
