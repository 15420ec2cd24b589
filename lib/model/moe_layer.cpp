#include "model/moe_layer.hpp"

#include <algorithm>

#include "model/mlp.hpp"

namespace moe {

namespace {
namespace expert_slot {
enum : std::size_t { in = 0, act, out };
}
}  // namespace

MoeLayer::MoeLayer(int64_t layer, int64_t num_experts, GatingPolicy gating, Dispatcher& dispatcher,
                   ExpertStore& experts, Workspace& expert_ws)
    : layer_(layer),
      num_experts_(num_experts),
      gating_(gating),
      dispatcher_(dispatcher),
      experts_(experts),
      expert_ws_(expert_ws) {
  reset_stats();
}

void MoeLayer::forward(Step& step, const LayerWeights& weights, float* h) {
  const int64_t t = step.num_tokens;
  const int64_t d = step.config.hidden_size;
  const float* x = step.ws.get<float>(slot::normed, static_cast<std::size_t>(t * d));
  const CommStats before = dispatcher_.comm_stats();
  if (!step.tp.active()) {
    experts_forward(step, weights, x, t, h);
  } else {
    // This tp rank's share of the group's tokens: block r of ceil(T / tp) rows. Only trailing
    // blocks are short, so the gathered blocks are h's rows in order.
    const int64_t block = (t + step.tp.size - 1) / step.tp.size;
    const int64_t begin = std::min(t, step.tp.rank * block);
    const int64_t own = std::min(t, begin + block) - begin;
    float* mine = step.ws.get<float>(slot::moe_out, static_cast<std::size_t>(block * d));
    float* all = step.ws.get<float>(slot::partial, static_cast<std::size_t>(block * d * step.tp.size));
    step.backend.copy(mine, h + begin * d, sizeof(float) * static_cast<std::size_t>(own * d));
    experts_forward(step, weights, x + begin * d, own, mine);
    ScopedPhase phase(step.times, "tp.allgather");
    step.backend.synchronize();
    step.tp.comm->allgather(mine, sizeof(float) * static_cast<std::size_t>(block * d), all);
    step.backend.copy(h, all, sizeof(float) * static_cast<std::size_t>(t * d));
  }
  const CommStats after = dispatcher_.comm_stats();
  stats_.alltoall_messages += after.messages - before.messages;
  stats_.alltoall_bytes += after.bytes - before.bytes;
  if (weights.shared) shared_forward(step, weights, x, h);
}

void MoeLayer::experts_forward(Step& step, const LayerWeights& weights, const float* x, int64_t t, float* y) {
  const ModelConfig& c = step.config;
  Backend& be = step.backend;
  const int64_t d = c.hidden_size;
  const int64_t e = c.num_experts(layer_);
  const int64_t k = c.top_k;
  {
    ScopedPhase phase(step.times, "moe.router");
    float* logits = step.ws.get<float>(slot::router_logits, static_cast<std::size_t>(t * e));
    int32_t* ids = step.ws.get<int32_t>(slot::topk_ids, static_cast<std::size_t>(t * k));
    float* w = step.ws.get<float>(slot::topk_weights, static_cast<std::size_t>(t * k));
    route(be, x, t, weights.router.view, k, c.router_renormalize, logits, ids, w, choice_);
    if (gating_.kind == GatingKind::dynamic)
      plan_.build_dynamic(choice_.ids.data(), choice_.weights.data(), t, k, e);
    else
      plan_.build_static(choice_.ids.data(), choice_.weights.data(), t, k, e,
                         static_capacity(t, k, e, gating_.capacity_factor));
  }
  float* rows = nullptr;
  int64_t num_rows = 0;
  {
    ScopedPhase phase(step.times, "moe.dispatch");
    num_rows = dispatcher_.dispatch(layer_, plan_, x, d, rows, local_offsets_);
  }
  float* expert_out = nullptr;
  {
    ScopedPhase phase(step.times, "moe.experts");
    const int64_t first = experts_.first_expert(layer_);
    const int64_t local = experts_.num_local_experts(layer_);
    const int64_t ffn = experts_.local_ffn(layer_);
    // Two GEMM groups per expert, its routed rows and its padding, with the same weights.
    in_views_.resize(static_cast<std::size_t>(2 * local));
    out_views_.resize(static_cast<std::size_t>(2 * local));
    for (int64_t x_id = 0; x_id < local; ++x_id) {
      if (local_offsets_[2 * x_id + 2] == local_offsets_[2 * x_id]) continue;  // idle experts are not touched
      const ExpertWeights ew = experts_.acquire(layer_, first + x_id);
      in_views_[2 * x_id] = in_views_[2 * x_id + 1] = ew.in;
      out_views_[2 * x_id] = out_views_[2 * x_id + 1] = ew.out;
    }
    const int64_t in_rows = c.mlp_in_rows(ffn);
    float* in = expert_ws_.get<float>(expert_slot::in, static_cast<std::size_t>(num_rows * in_rows));
    float* act = c.activation == ActivationKind::swiglu
                     ? expert_ws_.get<float>(expert_slot::act, static_cast<std::size_t>(num_rows * ffn))
                     : in;
    expert_out = expert_ws_.get<float>(expert_slot::out, static_cast<std::size_t>(num_rows * d));
    be.grouped_linear(rows, local_offsets_.data(), 2 * local, in_views_.data(), in);
    mlp_activation(be, c.activation, in, act, num_rows, ffn);
    be.grouped_linear(act, local_offsets_.data(), 2 * local, out_views_.data(), expert_out);
  }
  {
    ScopedPhase phase(step.times, "moe.combine");
    dispatcher_.combine(layer_, plan_, expert_out, d, y);
  }
  for (int64_t i = 0; i < e; ++i) stats_.expert_tokens[i] += plan_.counts[i];
  stats_.dropped += plan_.dropped;
  stats_.padded += plan_.padded;
  stats_.rows_computed += num_rows;
}

void MoeLayer::shared_forward(Step& step, const LayerWeights& weights, const float* x, float* h) {
  const ModelConfig& c = step.config;
  Backend& be = step.backend;
  const int64_t t = step.num_tokens;
  const int64_t d = c.hidden_size;
  if (c.shared_gate != SharedGateKind::sigmoid) {
    mlp_forward_into(step, *weights.shared, x, h, "moe.shared");
    return;
  }
  // sigmoid(x . w_gate) scales the whole shared output, so the tp partial sums are reduced
  // before the scale.
  float* shared = step.ws.get<float>(slot::mlp_out, static_cast<std::size_t>(t * d));
  {
    ScopedPhase phase(step.times, "moe.shared");
    mlp_forward(step, *weights.shared, x, t, shared, 0.0f);
  }
  if (step.tp.active()) {
    ScopedPhase phase(step.times, "tp.allreduce");
    be.synchronize();
    step.tp.comm->allreduce_sum(shared, static_cast<std::size_t>(t * d));
  }
  ScopedPhase phase(step.times, "moe.shared");
  float* gate = step.ws.get<float>(slot::gate_logit, static_cast<std::size_t>(t));
  be.linear(x, t, weights.shared_gate.view, gate, 0.0f);
  be.scale_rows_sigmoid(shared, gate, t, d);
  be.add(h, shared, t * d);
}

}  // namespace moe
