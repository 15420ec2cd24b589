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

// Row counts and row offsets to bytes, for rows of `d` floats.
void rows_to_bytes(std::vector<std::size_t>& v, int64_t d) {
  for (std::size_t& x : v) x *= static_cast<std::size_t>(d) * sizeof(float);
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
  h.chunks = chunks_;
  const auto chunks = static_cast<std::size_t>(chunks_);
  for (auto* v : {&h.c_send_bytes, &h.c_send_displs, &h.c_recv_bytes, &h.c_recv_displs}) v->resize(w);
  for (auto* v : {&h.send_bytes, &h.send_displs, &h.recv_bytes, &h.recv_displs}) v->assign(chunks * w, 0);
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
    const auto num_local = static_cast<int64_t>(experts.size());
    std::size_t chunk = 0;  // of the expert below; its rows are chunk's block for p
    for (std::size_t i = 0; i < experts.size(); ++i) {
      const LocalExpert& x = experts[i];
      while (static_cast<int64_t>(i) >= chunk_first_expert(num_local, chunks_, static_cast<int64_t>(chunk) + 1))
        ++chunk;
      const std::size_t rows_before = h.send_token.size();
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
      h.send_bytes[chunk * w + p] += h.send_token.size() - rows_before;  // rows for now; bytes in start_payload
    }
    h.c_send_bytes[p] = 2 * experts.size() * sizeof(int64_t);
  }
  // Chunk c's block for p follows chunks < c of p's block: one run of the send order.
  for (std::size_t p = 0, at = 0; p < w; ++p)
    for (std::size_t c = 0; c < chunks; ++c) {
      h.send_displs[c * w + p] = at;
      at += h.send_bytes[c * w + p];
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
  const auto chunks = static_cast<std::size_t>(h.chunks);
  h.local_experts.clear();
  for (const LocalExpert& x : local) h.local_experts.push_back(x.expert);
  h.chunk_experts.resize(chunks + 1);
  for (std::size_t c = 0; c <= chunks; ++c)
    h.chunk_experts[c] = chunk_first_expert(static_cast<int64_t>(local.size()), h.chunks, static_cast<int64_t>(c));
  // Expert order (expert, part, source) gives local_offsets; receive order is (chunk, source,
  // expert, part), and by_expert / by_source map between the two.
  h.local_offsets.assign(groups + 1, 0);
  for (std::size_t q = 0; q < w; ++q)
    for (std::size_t g = 0; g < groups; ++g) h.local_offsets[g + 1] += h.counts_in[q * groups + g];
  for (std::size_t g = 0; g < groups; ++g) h.local_offsets[g + 1] += h.local_offsets[g];
  const auto received_rows = static_cast<std::size_t>(h.local_offsets[groups]);
  h.by_expert.resize(received_rows);
  h.by_source.resize(received_rows);
  h.recv_chunk_rows.resize(chunks + 1);
  // Inside a group, rows keep source order: cursor[g] is the group's next free row.
  h.cursor.assign(h.local_offsets.begin(), h.local_offsets.end() - 1);
  int64_t received = 0;
  for (std::size_t c = 0; c < chunks; ++c) {
    h.recv_chunk_rows[c] = received;
    const auto g0 = static_cast<std::size_t>(2 * h.chunk_experts[c]);
    const auto g1 = static_cast<std::size_t>(2 * h.chunk_experts[c + 1]);
    for (std::size_t q = 0; q < w; ++q) {
      h.recv_displs[c * w + q] = static_cast<std::size_t>(received);  // rows for now; bytes in start_payload
      for (std::size_t g = g0; g < g1; ++g)
        for (int64_t i = 0; i < h.counts_in[q * groups + g]; ++i) {
          const int64_t expert_row = h.cursor[g]++;
          h.by_expert[static_cast<std::size_t>(expert_row)] = static_cast<int32_t>(received);
          h.by_source[static_cast<std::size_t>(received)] = static_cast<int32_t>(expert_row);
          ++received;
        }
      h.recv_bytes[c * w + q] = static_cast<std::size_t>(received) - h.recv_displs[c * w + q];
    }
  }
  h.recv_chunk_rows[chunks] = received;
  h.phase = DispatchHandle::Phase::counts;
}

void AllToAllDispatcher::start_payload(DispatchHandle& h, const float* x) {
  h.expect(DispatchHandle::Phase::counts, "start_payload");
  Backend& be = ws_.backend();
  const int64_t d = h.d;
  const int64_t received = h.num_rows();
  const auto w = static_cast<std::size_t>(placement_.world());
  h.send_token_dev = ws_.get<int32_t>(ws_slot::send_token, static_cast<std::size_t>(h.num_sent));
  h.send_weight_dev = ws_.get<float>(ws_slot::send_weight, static_cast<std::size_t>(h.num_sent));
  h.by_expert_dev = ws_.get<int32_t>(ws_slot::by_expert, static_cast<std::size_t>(received));
  h.by_source_dev = ws_.get<int32_t>(ws_slot::by_source, static_cast<std::size_t>(received));
  float* send = ws_.get<float>(ws_slot::send_rows, static_cast<std::size_t>(h.num_sent * d));
  h.received = ws_.get<float>(ws_slot::recv_rows, static_cast<std::size_t>(received * d));
  h.expert_rows = ws_.get<float>(ws_slot::expert_rows, static_cast<std::size_t>(received * d));
  be.copy_to_device(h.send_token_dev, h.send_token.data(), sizeof(int32_t) * h.send_token.size());
  be.copy_to_device(h.send_weight_dev, h.send_weight.data(), sizeof(float) * h.send_weight.size());
  be.copy_to_device(h.by_expert_dev, h.by_expert.data(), sizeof(int32_t) * h.by_expert.size());
  be.copy_to_device(h.by_source_dev, h.by_source.data(), sizeof(int32_t) * h.by_source.size());
  be.gather_rows(x, h.send_token_dev, h.num_sent, d, send);
  for (auto* v : {&h.send_bytes, &h.send_displs, &h.recv_bytes, &h.recv_displs}) rows_to_bytes(*v, d);
  be.synchronize();
  h.payload_requests.resize(static_cast<std::size_t>(h.chunks));
  h.combine_requests.resize(static_cast<std::size_t>(h.chunks));
  for (std::size_t c = 0; c < static_cast<std::size_t>(h.chunks); ++c)
    alltoall_.start(send, h.send_bytes.data() + c * w, h.send_displs.data() + c * w, h.received,
                    h.recv_bytes.data() + c * w, h.recv_displs.data() + c * w, h.payload_requests[c]);
  h.arrived = h.returning = 0;
  h.phase = DispatchHandle::Phase::exchanging;
}

void AllToAllDispatcher::wait_payload(DispatchHandle& h, int64_t chunk) {
  h.expect_chunk(chunk, h.arrived, "wait_payload");
  alltoall_.wait(h.payload_requests[static_cast<std::size_t>(chunk)]);
  const int64_t r0 = h.chunk_rows(chunk), r1 = h.chunk_rows(chunk + 1);
  ws_.backend().gather_rows(h.received, h.by_expert_dev + r0, r1 - r0, h.d, h.expert_rows + r0 * h.d);
  ++h.arrived;
}

void AllToAllDispatcher::progress(DispatchHandle& /*h*/) {
  alltoall_.progress();
}

void AllToAllDispatcher::start_combine(DispatchHandle& h, int64_t chunk, const float* expert_out) {
  h.expect_chunk(chunk, h.returning, "start_combine");
  MOE_CHECK(chunk < h.arrived, "dispatcher (layer {}): start_combine of micro-batch {} before its wait_payload",
            h.layer, chunk);
  Backend& be = ws_.backend();
  const auto w = static_cast<std::size_t>(placement_.world());
  const auto c = static_cast<std::size_t>(chunk);
  // The chunk's outputs into its receive rows (its payload is consumed), then home into the
  // chunk's send rows (its payload has left): the return trip mirrors the dispatch.
  const int64_t b0 = h.recv_chunk_rows[c], b1 = h.recv_chunk_rows[c + 1];
  float* back = h.received;
  float* home = ws_.get<float>(ws_slot::send_rows, static_cast<std::size_t>(h.num_sent * h.d));
  be.gather_rows(expert_out, h.by_source_dev + b0, b1 - b0, h.d, back + b0 * h.d);
  be.synchronize();
  alltoall_.start(back, h.recv_bytes.data() + c * w, h.recv_displs.data() + c * w, home, h.send_bytes.data() + c * w,
                  h.send_displs.data() + c * w, h.combine_requests[c]);
  h.home = home;
  if (++h.returning == h.chunks) h.phase = DispatchHandle::Phase::combine_started;
}

void AllToAllDispatcher::wait_combine(DispatchHandle& h, float* y) {
  h.expect(DispatchHandle::Phase::combine_started, "wait_combine");
  for (AllToAllRequest& r : h.combine_requests) alltoall_.wait(r);
  // Once every output is home, in send order: the sum's order does not depend on the chunks.
  ws_.backend().scatter_add_rows(h.home, h.send_token_dev, h.send_weight_dev, h.num_sent, h.d, y);
  h.phase = DispatchHandle::Phase::empty;
}

}  // namespace moe
