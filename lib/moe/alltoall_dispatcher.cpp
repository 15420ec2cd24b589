#include "moe/alltoall_dispatcher.hpp"

#include "core/error.hpp"

namespace moe {

namespace {
namespace ws_slot {
enum : std::size_t { send_token = 0, send_weight, send_rows, recv_rows, by_expert, by_source, expert_rows };
}
}  // namespace

AllToAllDispatcher::AllToAllDispatcher(Workspace& ws, AllToAll& alltoall, Communicator& counts,
                                       const ExpertPlacement& placement)
    : ws_(ws), alltoall_(alltoall), counts_comm_(counts), placement_(placement) {
  MOE_CHECK(counts.size() == placement.world(), "dispatcher: count communicator has {} ranks, placement {}",
            counts.size(), placement.world());
  const auto w = static_cast<std::size_t>(placement.world());
  for (auto* v : {&c_send_bytes_, &c_send_displs_, &c_recv_bytes_, &c_recv_displs_, &send_bytes_, &send_displs_,
                  &recv_bytes_, &recv_displs_})
    v->resize(w);
  send_rows_.resize(w);
  recv_rows_.resize(w);
}

void AllToAllDispatcher::to_bytes(const std::vector<int64_t>& rows, int64_t d, std::vector<std::size_t>& bytes,
                                  std::vector<std::size_t>& displs) {
  std::size_t offset = 0;
  for (std::size_t p = 0; p < rows.size(); ++p) {
    bytes[p] = static_cast<std::size_t>(rows[p] * d) * sizeof(float);
    displs[p] = offset;
    offset += bytes[p];
  }
}

int64_t AllToAllDispatcher::dispatch(int64_t layer, const DispatchPlan& plan, const float* x, int64_t d,
                                     float*& expert_rows, std::vector<int64_t>& local_offsets) {
  Backend& be = ws_.backend();
  const LayerPlacement& lp = placement_.layer(layer);
  const int w = placement_.world();
  const int me = placement_.rank();
  MOE_CHECK(plan.num_experts == lp.num_experts, "layer {}: plan for {} experts, placement for {}", layer,
            plan.num_experts, lp.num_experts);

  // Counts for every destination's local experts, and the rows in send order.
  counts_out_.clear();
  send_token_.clear();
  send_weight_.clear();
  for (int p = 0; p < w; ++p) {
    const int64_t first = lp.rank_first[p];
    const int64_t count = lp.rank_count[p];
    int64_t rows = 0;
    for (int64_t e = first; e < first + count; ++e) {
      const int64_t begin = plan.expert_offsets[e];
      const int64_t end = plan.expert_offsets[e + 1];
      counts_out_.push_back(plan.kept[e]);                // routed rows
      counts_out_.push_back(end - begin - plan.kept[e]);  // padding

      rows += end - begin;
      for (int64_t r = begin; r < end; ++r) {
        send_token_.push_back(plan.row_token[static_cast<std::size_t>(r)]);
        send_weight_.push_back(plan.row_weight[static_cast<std::size_t>(r)]);
      }
    }
    send_rows_[p] = rows;
    c_send_bytes_[p] = static_cast<std::size_t>(2 * count) * sizeof(int64_t);
  }
  // Two groups per local expert: its routed rows, then its padding (see Dispatcher::dispatch).
  const int64_t local = lp.rank_count[me];
  const int64_t groups = 2 * local;
  counts_in_.resize(static_cast<std::size_t>(groups * w));
  std::size_t offset = 0;
  for (int p = 0; p < w; ++p) {
    c_send_displs_[p] = offset;
    offset += c_send_bytes_[p];
    c_recv_bytes_[p] = static_cast<std::size_t>(groups) * sizeof(int64_t);
    c_recv_displs_[p] = static_cast<std::size_t>(p * groups) * sizeof(int64_t);
  }
  counts_comm_.alltoallv(counts_out_.data(), c_send_bytes_.data(), c_send_displs_.data(), counts_in_.data(),
                         c_recv_bytes_.data(), c_recv_displs_.data());

  // Receive layout (source, expert, part) and the regrouping into (expert, part, source).
  local_offsets.assign(static_cast<std::size_t>(groups + 1), 0);
  for (int q = 0; q < w; ++q) {
    recv_rows_[q] = 0;
    for (int64_t g = 0; g < groups; ++g) {
      recv_rows_[q] += counts_in_[q * groups + g];
      local_offsets[g + 1] += counts_in_[q * groups + g];
    }
  }
  for (int64_t g = 0; g < groups; ++g) local_offsets[g + 1] += local_offsets[g];
  num_sent_ = static_cast<int64_t>(send_token_.size());
  num_received_ = local_offsets[groups];
  by_expert_.resize(static_cast<std::size_t>(num_received_));
  by_source_.resize(static_cast<std::size_t>(num_received_));
  // Inside a group, rows keep source order: cursor[g] is the group's next free row.
  cursor_.assign(local_offsets.begin(), local_offsets.end() - 1);
  int64_t received = 0;
  for (int q = 0; q < w; ++q) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t n = counts_in_[q * groups + g];
      for (int64_t i = 0; i < n; ++i) {
        const int64_t expert_row = cursor_[static_cast<std::size_t>(g)]++;
        by_expert_[static_cast<std::size_t>(expert_row)] = static_cast<int32_t>(received);
        by_source_[static_cast<std::size_t>(received)] = static_cast<int32_t>(expert_row);
        ++received;
      }
    }
  }

  // Move the rows.
  send_token_dev_ = ws_.get<int32_t>(ws_slot::send_token, static_cast<std::size_t>(num_sent_));
  send_weight_dev_ = ws_.get<float>(ws_slot::send_weight, static_cast<std::size_t>(num_sent_));
  float* send = ws_.get<float>(ws_slot::send_rows, static_cast<std::size_t>(num_sent_ * d));
  float* recv = ws_.get<float>(ws_slot::recv_rows, static_cast<std::size_t>(num_received_ * d));
  auto* by_expert = ws_.get<int32_t>(ws_slot::by_expert, static_cast<std::size_t>(num_received_));
  expert_rows = ws_.get<float>(ws_slot::expert_rows, static_cast<std::size_t>(num_received_ * d));
  be.copy_to_device(send_token_dev_, send_token_.data(), sizeof(int32_t) * send_token_.size());
  be.copy_to_device(send_weight_dev_, send_weight_.data(), sizeof(float) * send_weight_.size());
  be.copy_to_device(by_expert, by_expert_.data(), sizeof(int32_t) * by_expert_.size());
  be.gather_rows(x, send_token_dev_, num_sent_, d, send);
  to_bytes(send_rows_, d, send_bytes_, send_displs_);
  to_bytes(recv_rows_, d, recv_bytes_, recv_displs_);
  be.synchronize();
  alltoall_.run(send, send_bytes_.data(), send_displs_.data(), recv, recv_bytes_.data(), recv_displs_.data());
  be.gather_rows(recv, by_expert, num_received_, d, expert_rows);
  return num_received_;
}

void AllToAllDispatcher::combine(int64_t /*layer*/, const DispatchPlan& /*plan*/, const float* expert_out, int64_t d,
                                 float* y) {
  Backend& be = ws_.backend();
  // Outputs back into (source, expert) order, then home: the return trip mirrors the dispatch.
  auto* by_source = ws_.get<int32_t>(ws_slot::by_source, static_cast<std::size_t>(num_received_));
  float* back = ws_.get<float>(ws_slot::recv_rows, static_cast<std::size_t>(num_received_ * d));
  float* home = ws_.get<float>(ws_slot::send_rows, static_cast<std::size_t>(num_sent_ * d));
  be.copy_to_device(by_source, by_source_.data(), sizeof(int32_t) * by_source_.size());
  be.gather_rows(expert_out, by_source, num_received_, d, back);
  be.synchronize();
  alltoall_.run(back, recv_bytes_.data(), recv_displs_.data(), home, send_bytes_.data(), send_displs_.data());
  be.scatter_add_rows(home, send_token_dev_, send_weight_dev_, num_sent_, d, y);
}

}  // namespace moe
