#include "moe/alltoall_dispatcher.hpp"

#include "core/error.hpp"

namespace moe {

namespace {
namespace ws_slot {
enum : std::size_t {
  send_token = 0,
  send_weight,
  send_rows,
  recv_rows,
  by_expert,
  by_source,
  expert_rows,
  counts_out,
  counts_in
};
}

// Byte counts and displacements for per-rank row counts of `d` floats.
void rows_to_bytes(std::vector<std::size_t>& bytes, std::vector<std::size_t>& displs, int64_t d) {
  std::size_t offset = 0;
  for (std::size_t p = 0; p < bytes.size(); ++p) {
    bytes[p] *= static_cast<std::size_t>(d) * sizeof(float);
    displs[p] = offset;
    offset += bytes[p];
  }
}
}  // namespace

AllToAllDispatcher::AllToAllDispatcher(Workspace& ws, AllToAll& alltoall, Communicator& counts,
                                       const ExpertPlacement& placement, std::vector<int> node_of)
    : ws_(ws),
      alltoall_(alltoall),
      counts_comm_(counts),
      placement_(placement),
      node_of_(std::move(node_of)),
      rank_(counts.rank()) {
  MOE_CHECK(counts.size() == placement.world(), "dispatcher: count communicator has {} ranks, placement {}",
            counts.size(), placement.world());
  MOE_CHECK(node_of_.empty() || static_cast<int>(node_of_.size()) == placement.world(),
            "dispatcher: node map of {} ranks, placement {}", node_of_.size(), placement.world());
}

void AllToAllDispatcher::layout(int64_t layer, const DispatchPlan& plan, int64_t d, DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::empty, "layout");
  const LayerPlacement& lp = placement_.layer(layer);
  const auto w = static_cast<std::size_t>(placement_.world());
  MOE_CHECK(plan.num_experts == lp.num_experts, "layer {}: plan for {} experts, placement for {}", layer,
            plan.num_experts, lp.num_experts);
  h.layer = layer;
  h.d = d;
  h.plan = &plan;
  for (auto* v : {&h.c_send_bytes, &h.c_send_displs, &h.c_recv_bytes, &h.c_recv_displs, &h.send_bytes, &h.send_displs,
                  &h.recv_bytes, &h.recv_displs})
    v->resize(w);
  h.counts_out.clear();
  h.send_token.clear();
  h.send_weight.clear();
  const auto send = [&](int64_t first, int64_t count) {
    for (int64_t r = first; r < first + count; ++r) {
      h.send_token.push_back(plan.row_token[static_cast<std::size_t>(r)]);
      h.send_weight.push_back(plan.row_weight[static_cast<std::size_t>(r)]);
    }
  };
  for (std::size_t p = 0; p < w; ++p) {
    const std::vector<LocalExpert>& experts = lp.rank_experts[p];
    const std::size_t before = h.send_token.size();
    for (const LocalExpert& x : experts) {
      const std::vector<ExpertHolder>& holders = lp.holders[static_cast<std::size_t>(x.expert)];
      std::size_t holder = 0;
      while (holders[holder].rank != static_cast<int>(p)) ++holder;
      const int64_t begin = plan.expert_offsets[x.expert];
      const int64_t kept = plan.kept[x.expert];
      const int64_t padding = plan.expert_offsets[x.expert + 1] - begin - kept;
      // Routed rows and padding rows are shared out separately, by the same rule.
      const auto [r0, r1] = expert_row_share(holders, holder, kept, rank_, node_of_);
      const auto [q0, q1] = expert_row_share(holders, holder, padding, rank_, node_of_);
      h.counts_out.push_back(r1 - r0);
      h.counts_out.push_back(q1 - q0);
      send(begin + r0, r1 - r0);
      send(begin + kept + q0, q1 - q0);
    }
    h.send_bytes[p] = h.send_token.size() - before;  // rows for now; bytes in start_payload
    h.c_send_bytes[p] = 2 * experts.size() * sizeof(int64_t);
  }
  h.num_sent = static_cast<int64_t>(h.send_token.size());
  h.phase = DispatchHandle::Phase::layout;
}

void AllToAllDispatcher::start_counts(DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::layout, "start_counts");
  const auto w = static_cast<std::size_t>(placement_.world());
  // Two groups per local expert: its routed rows, then its padding (see DispatchHandle).
  const std::size_t groups = 2 * placement_.local_experts(h.layer, rank_).size();
  h.counts_in.resize(groups * w);
  std::size_t offset = 0;
  for (std::size_t p = 0; p < w; ++p) {
    h.c_send_displs[p] = offset;
    offset += h.c_send_bytes[p];
    h.c_recv_bytes[p] = groups * sizeof(int64_t);
    h.c_recv_displs[p] = p * groups * sizeof(int64_t);
  }
  // Blocking, through backend memory (what the communicator reaches); wait_counts only lays out
  // what arrived.
  Backend& be = ws_.backend();
  auto* out = ws_.get<int64_t>(ws_slot::counts_out, h.counts_out.size());
  auto* in = ws_.get<int64_t>(ws_slot::counts_in, h.counts_in.size());
  be.copy_to_device(out, h.counts_out.data(), sizeof(int64_t) * h.counts_out.size());
  counts_comm_.alltoallv(out, h.c_send_bytes.data(), h.c_send_displs.data(), in, h.c_recv_bytes.data(),
                         h.c_recv_displs.data());
  be.copy_to_host(h.counts_in.data(), in, sizeof(int64_t) * h.counts_in.size());
  h.phase = DispatchHandle::Phase::counts_started;
}

void AllToAllDispatcher::wait_counts(DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::counts_started, "wait_counts");
  const auto w = static_cast<std::size_t>(placement_.world());
  const std::vector<LocalExpert>& local = placement_.local_experts(h.layer, rank_);
  const std::size_t groups = 2 * local.size();
  h.local_experts.clear();
  for (const LocalExpert& x : local) h.local_experts.push_back(x.expert);
  // Receive layout (source, expert, part) and the regrouping into (expert, part, source).
  h.local_offsets.assign(groups + 1, 0);
  for (std::size_t q = 0; q < w; ++q) {
    h.recv_bytes[q] = 0;
    for (std::size_t g = 0; g < groups; ++g) {
      const auto n = static_cast<std::size_t>(h.counts_in[q * groups + g]);
      h.recv_bytes[q] += n;  // rows for now; bytes in start_payload
      h.local_offsets[g + 1] += static_cast<int64_t>(n);
    }
  }
  for (std::size_t g = 0; g < groups; ++g) h.local_offsets[g + 1] += h.local_offsets[g];
  const auto received_rows = static_cast<std::size_t>(h.local_offsets[groups]);
  h.by_expert.resize(received_rows);
  h.by_source.resize(received_rows);
  // Inside a group, rows keep source order: cursor[g] is the group's next free row.
  h.cursor.assign(h.local_offsets.begin(), h.local_offsets.end() - 1);
  int64_t received = 0;
  for (std::size_t q = 0; q < w; ++q)
    for (std::size_t g = 0; g < groups; ++g)
      for (int64_t i = 0; i < h.counts_in[q * groups + g]; ++i) {
        const int64_t expert_row = h.cursor[g]++;
        h.by_expert[static_cast<std::size_t>(expert_row)] = static_cast<int32_t>(received);
        h.by_source[static_cast<std::size_t>(received)] = static_cast<int32_t>(expert_row);
        ++received;
      }
  h.phase = DispatchHandle::Phase::counts;
}

void AllToAllDispatcher::start_payload(DispatchHandle& h, const float* x) {
  h.expect(DispatchHandle::Phase::counts, "start_payload");
  Backend& be = ws_.backend();
  const int64_t d = h.d;
  const int64_t received = h.num_rows();
  h.send_token_dev = ws_.get<int32_t>(ws_slot::send_token, static_cast<std::size_t>(h.num_sent));
  h.send_weight_dev = ws_.get<float>(ws_slot::send_weight, static_cast<std::size_t>(h.num_sent));
  float* send = ws_.get<float>(ws_slot::send_rows, static_cast<std::size_t>(h.num_sent * d));
  float* recv = ws_.get<float>(ws_slot::recv_rows, static_cast<std::size_t>(received * d));
  be.copy_to_device(h.send_token_dev, h.send_token.data(), sizeof(int32_t) * h.send_token.size());
  be.copy_to_device(h.send_weight_dev, h.send_weight.data(), sizeof(float) * h.send_weight.size());
  be.gather_rows(x, h.send_token_dev, h.num_sent, d, send);
  rows_to_bytes(h.send_bytes, h.send_displs, d);
  rows_to_bytes(h.recv_bytes, h.recv_displs, d);
  be.synchronize();
  alltoall_.run(send, h.send_bytes.data(), h.send_displs.data(), recv, h.recv_bytes.data(), h.recv_displs.data());
  h.received = recv;
  h.phase = DispatchHandle::Phase::payload_started;
}

void AllToAllDispatcher::wait_payload(DispatchHandle& h) {
  h.expect(DispatchHandle::Phase::payload_started, "wait_payload");
  Backend& be = ws_.backend();
  const int64_t received = h.num_rows();
  auto* by_expert = ws_.get<int32_t>(ws_slot::by_expert, static_cast<std::size_t>(received));
  h.expert_rows = ws_.get<float>(ws_slot::expert_rows, static_cast<std::size_t>(received * h.d));
  be.copy_to_device(by_expert, h.by_expert.data(), sizeof(int32_t) * h.by_expert.size());
  be.gather_rows(h.received, by_expert, received, h.d, h.expert_rows);
  h.phase = DispatchHandle::Phase::payload;
}

void AllToAllDispatcher::start_combine(DispatchHandle& h, const float* expert_out) {
  h.expect(DispatchHandle::Phase::payload, "start_combine");
  Backend& be = ws_.backend();
  const int64_t received = h.num_rows();
  // Outputs back into (source, expert) order, then home: the return trip mirrors the dispatch.
  auto* by_source = ws_.get<int32_t>(ws_slot::by_source, static_cast<std::size_t>(received));
  float* back = ws_.get<float>(ws_slot::recv_rows, static_cast<std::size_t>(received * h.d));
  float* home = ws_.get<float>(ws_slot::send_rows, static_cast<std::size_t>(h.num_sent * h.d));
  be.copy_to_device(by_source, h.by_source.data(), sizeof(int32_t) * h.by_source.size());
  be.gather_rows(expert_out, by_source, received, h.d, back);
  be.synchronize();
  alltoall_.run(back, h.recv_bytes.data(), h.recv_displs.data(), home, h.send_bytes.data(), h.send_displs.data());
  h.home = home;
  h.phase = DispatchHandle::Phase::combine_started;
}

void AllToAllDispatcher::wait_combine(DispatchHandle& h, float* y) {
  h.expect(DispatchHandle::Phase::combine_started, "wait_combine");
  ws_.backend().scatter_add_rows(h.home, h.send_token_dev, h.send_weight_dev, h.num_sent, h.d, y);
  h.phase = DispatchHandle::Phase::empty;
}

}  // namespace moe
