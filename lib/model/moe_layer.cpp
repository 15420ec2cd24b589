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
  {
    ScopedPhase phase(step.times, "moe.dispatch");
    dispatcher_.layout(layer_, plan_, d, handle_);
    dispatcher_.start_counts(handle_);
    dispatcher_.wait_counts(handle_);
    // The experts this rank needs for this batch are known: a store may start loading them.
    experts_.prefetch(layer_, handle_.active_experts());
    dispatcher_.start_payload(handle_, x);
  }
  // Micro-batch by micro-batch: while one's experts compute, the next one's rows and the last
  // one's outputs travel (where the all-to-all overlaps).
  float* expert_out = nullptr;
  {
    ScopedPhase phase(step.times, "moe.experts");
    expert_out = reserve_experts(step);
  }
  for (int64_t chunk = 0; chunk < handle_.chunks; ++chunk) {
    {
      ScopedPhase phase(step.times, "moe.dispatch");
      dispatcher_.wait_payload(handle_, chunk);
    }
    {
      ScopedPhase phase(step.times, "moe.experts");
      compute_experts(step, handle_.chunk_experts[chunk], handle_.chunk_experts[chunk + 1]);
    }
    ScopedPhase phase(step.times, "moe.combine");
    dispatcher_.start_combine(handle_, chunk, expert_out);
  }
  {
    ScopedPhase phase(step.times, "moe.combine");
    dispatcher_.wait_combine(handle_, y);
  }
  for (int64_t i = 0; i < e; ++i) stats_.expert_tokens[i] += plan_.counts[i];
  stats_.dropped += plan_.dropped;
  stats_.padded += plan_.padded;
  stats_.rows_computed += handle_.num_rows();
}

float* MoeLayer::reserve_experts(Step& step) {
  const ModelConfig& c = step.config;
  const int64_t d = c.hidden_size;
  const int64_t num_rows = handle_.num_rows();
  const std::vector<int64_t>& offsets = handle_.local_offsets;
  const auto local = static_cast<int64_t>(handle_.local_experts.size());
  in_views_.assign(static_cast<std::size_t>(2 * local), WeightView{});
  up_views_.assign(static_cast<std::size_t>(2 * local), WeightView{});
  out_views_.assign(static_cast<std::size_t>(2 * local), WeightView{});
  ffn_.assign(static_cast<std::size_t>(local), 0);
  split_.assign(static_cast<std::size_t>(local), 0);
  int64_t widest = 0;
  for (int64_t x = 0; x < local; ++x)
    if (offsets[2 * x + 2] > offsets[2 * x])
      widest = std::max(widest, experts_.expert_ffn(layer_, handle_.local_experts[x]));
  in_ = expert_ws_.get<float>(expert_slot::in, static_cast<std::size_t>(num_rows * c.mlp_in_rows(widest)));
  act_ = c.activation == ActivationKind::swiglu
             ? expert_ws_.get<float>(expert_slot::act, static_cast<std::size_t>(num_rows * widest))
             : in_;
  out_ = expert_ws_.get<float>(expert_slot::out, static_cast<std::size_t>(num_rows * d));
  return out_;
}

void MoeLayer::compute_experts(Step& step, int64_t first, int64_t last) {
  const std::vector<int64_t>& offsets = handle_.local_offsets;
  const auto idle = [&](int64_t x) { return offsets[2 * x + 2] == offsets[2 * x]; };  // not leased
  // Leases are held until their experts' GEMMs are done. A bounded store lends at most
  // lease_capacity experts of a layer at once, so the active experts go in chunks of that many
  // (compute order), a chunk's leases released before the next chunk is leased. Each expert's
  // GEMMs are the same whatever the chunking (grouped_linear is per group), so the result is too.
  const int64_t capacity = experts_.lease_capacity(layer_);
  for (int64_t chunk = first; chunk < last;) {
    leases_.clear();
    int64_t end = chunk;
    for (; end < last; ++end) {
      if (idle(end)) continue;
      if (static_cast<int64_t>(leases_.size()) == capacity) break;
      ExpertLease& lease = leases_.emplace_back(experts_.lease(layer_, handle_.local_experts[end]));
      // Two GEMM groups per expert, its routed rows and its padding, with the same weights.
      const ExpertWeights& w = lease.weights();
      in_views_[2 * end] = in_views_[2 * end + 1] = w.in;
      up_views_[2 * end] = up_views_[2 * end + 1] = w.up;
      out_views_[2 * end] = out_views_[2 * end + 1] = w.out;
      ffn_[end] = w.ffn();
      split_[end] = w.split_gate_up() ? 1 : 0;
    }
    compute_runs(step, chunk, end, in_, act_, out_);
    chunk = end;
  }
  leases_.clear();  // released: a cache may evict them now
}

void MoeLayer::compute_runs(Step& step, int64_t begin, int64_t end, float* in, float* act, float* out) {
  const ModelConfig& c = step.config;
  Backend& be = step.backend;
  const int64_t d = c.hidden_size;
  const std::vector<int64_t>& offsets = handle_.local_offsets;
  // Experts of one FFN width are consecutive (placement.hpp's compute order); idle experts join
  // any run. Each run is one grouped GEMM in, the activation, one grouped GEMM out; experts used
  // in place in a mapped checkpoint have gate and up in two datasets, so their runs make gate
  // and up with two grouped GEMMs (one [2F, d] GEMM is 0.5-1% faster: the input rows are packed
  // once). Rounding may differ in the last bits between the two (OpenBLAS picks kernels by shape).
  const bool swiglu = c.activation == ActivationKind::swiglu;
  for (int64_t first = begin; first < end;) {
    int64_t width = 0, run_end = first;
    char split = 0;
    for (; run_end < end; ++run_end) {
      if (ffn_[run_end] == 0) continue;
      if (width != 0 && (ffn_[run_end] != width || split_[run_end] != split)) break;
      width = ffn_[run_end];
      split = split_[run_end];
    }
    const int64_t g0 = 2 * first, groups = 2 * (run_end - first);
    const int64_t r0 = offsets[g0], rows = offsets[g0 + groups] - r0;
    if (rows > 0) {
      float* run_in = in + r0 * c.mlp_in_rows(width);
      float* run_act = swiglu ? act + r0 * width : run_in;
      // grouped_linear addresses group g at offsets[g] * (its row width): offsets relative to the run.
      run_offsets_.resize(static_cast<std::size_t>(groups + 1));
      for (int64_t g = 0; g <= groups; ++g) run_offsets_[g] = offsets[g0 + g] - r0;
      const float* x = handle_.expert_rows + r0 * d;
      if (swiglu && split) {  // gate rows [rows, F] then up rows [rows, F] in run_in
        float* up = run_in + rows * width;
        be.grouped_linear(x, run_offsets_.data(), groups, in_views_.data() + g0, run_in);
        dispatcher_.progress(handle_);
        be.grouped_linear(x, run_offsets_.data(), groups, up_views_.data() + g0, up);
        be.swiglu(run_in, up, width, run_act, rows, width);
      } else {
        be.grouped_linear(x, run_offsets_.data(), groups, in_views_.data() + g0, run_in);
        mlp_activation(be, c.activation, run_in, run_act, rows, width);
      }
      dispatcher_.progress(handle_);
      be.grouped_linear(run_act, run_offsets_.data(), groups, out_views_.data() + g0, out + r0 * d);
      dispatcher_.progress(handle_);
    }
    first = run_end;
  }
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
