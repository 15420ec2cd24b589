#include "moe/cached_expert_store.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/timer.hpp"

namespace moe {

CachedExpertStore::CachedExpertStore(CheckpointReader& ckpt, Backend& backend, const ExpertPlacement& placement,
                                     int rank, CachedExpertStoreOptions options)
    : options_(std::move(options)) {
  const ModelConfig& c = ckpt.config();
  hidden_ = c.hidden_size;
  activation_ = c.activation;
  const int64_t d = hidden_;
  MOE_CHECK(placement.num_layers() == c.num_layers, "expert store: placement has {} layers, the model {}",
            placement.num_layers(), c.num_layers);
  MOE_CHECK(static_cast<int64_t>(options_.layer_slots.size()) == c.num_layers,
            "expert cache: {} layer slot counts for {} layers", options_.layer_slots.size(), c.num_layers);
  layers_.resize(static_cast<std::size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    if (!c.is_moe_layer(i)) continue;
    Layer& layer = layers_[static_cast<std::size_t>(i)];
    const int64_t e = c.num_experts(i);
    layer.local = placement.local_experts(i, rank);
    layer.local_of.assign(static_cast<std::size_t>(e), -1);
    if (layer.local.empty()) continue;
    const auto num_local = static_cast<int64_t>(layer.local.size());
    layer.slots = std::min(options_.layer_slots[static_cast<std::size_t>(i)], num_local);
    const std::string p = "layers/" + std::to_string(i) + "/moe/experts/";
    const int64_t full = c.expert_ffn;
    if (c.activation == ActivationKind::swiglu) layer.gate = map_expert_tensor(ckpt, p + "gate_proj", {e, full, d});
    layer.up = map_expert_tensor(ckpt, p + "up_proj", {e, full, d});
    layer.down = map_expert_tensor(ckpt, p + "down_proj", {e, d, full});
    layer.dtype = layer.up.dtype;
    MOE_CHECK(
        layer.down.dtype == layer.dtype && (c.activation != ActivationKind::swiglu || layer.gate.dtype == layer.dtype),
        "{}: {} experts differ in dtype", ckpt.path(), p);
    int64_t widest = 0;
    for (int64_t x = 0; x < num_local; ++x) {
      layer.local_of[static_cast<std::size_t>(layer.local[static_cast<std::size_t>(x)].expert)] = x;
      widest = std::max(widest, layer.local[static_cast<std::size_t>(x)].ffn());
    }
    const std::size_t block = static_cast<std::size_t>(widest * d) * dtype_size(layer.dtype);
    layer.in_bytes = static_cast<std::size_t>(c.mlp_in_rows(widest) / widest) * block;
    layer.out_bytes = block;
    layer.in = backend.alloc(layer.in_bytes * static_cast<std::size_t>(layer.slots));
    layer.out = backend.alloc(layer.out_bytes * static_cast<std::size_t>(layer.slots));
    bytes_ += (layer.in_bytes + layer.out_bytes) * static_cast<std::size_t>(layer.slots);
    layer.ticket.assign(static_cast<std::size_t>(num_local), 0);
    // The warm-up batch runs before the batch loop; belady's future starts with the loop.
    layer.book = make_book(static_cast<std::size_t>(i), options_.policy == "belady" ? "lru" : options_.policy);
  }
  loader_ = std::make_unique<ExpertLoader>(ckpt.path(), backend);
}

CachedExpertStore::~CachedExpertStore() = default;

std::unique_ptr<ExpertCacheBook> CachedExpertStore::make_book(std::size_t i, const std::string& policy) const {
  const Layer& layer = layers_[i];
  const auto num_local = static_cast<int64_t>(layer.local.size());
  const RequestSteps* future = policy == "belady" ? &options_.future.at(i) : nullptr;
  return std::make_unique<ExpertCacheBook>(num_local, layer.slots, make_eviction_policy(policy, num_local, future),
                                           layer.in_bytes + layer.out_bytes);
}

void CachedExpertStore::begin_run() {
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    if (!layer.book) continue;
    wait_loads(layer);
    for (int32_t x = 0; x < static_cast<int32_t>(layer.local.size()); ++x)
      if (layer.book->leased(x)) layer.book->release(x);
    layer.book = make_book(i, options_.policy);  // empty: the slots' contents are forgotten
  }
}

int64_t CachedExpertStore::expert_ffn(int64_t layer_id, int64_t expert) const {
  const Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  const int64_t x = layer.local_of.at(static_cast<std::size_t>(expert));
  MOE_CHECK(x >= 0, "layer {}: expert {} is not held by this rank", layer_id, expert);
  return layer.local[static_cast<std::size_t>(x)].ffn();
}

int64_t CachedExpertStore::lease_capacity(int64_t layer) const {
  return std::max<int64_t>(1, layers_[static_cast<std::size_t>(layer)].slots);
}

std::vector<LoadSegment> CachedExpertStore::segments(const Layer& layer, int64_t x, int64_t slot) const {
  const LocalExpert& le = layer.local[static_cast<std::size_t>(x)];
  const auto e = static_cast<std::size_t>(le.expert);
  const std::size_t es = dtype_size(layer.dtype);
  const auto d = static_cast<std::size_t>(hidden_);
  const auto f = static_cast<std::size_t>(le.ffn()), f0 = static_cast<std::size_t>(le.ffn_begin);
  std::byte* in = layer.in.as<std::byte>() + static_cast<std::size_t>(slot) * layer.in_bytes;
  std::byte* out = layer.out.as<std::byte>() + static_cast<std::size_t>(slot) * layer.out_bytes;
  std::vector<LoadSegment> s;
  // in: [gate rows f0..f0+f, then up rows] of [full, d]: each one contiguous run.
  if (activation_ == ActivationKind::swiglu) {
    s.push_back({layer.gate.offsets[e] + f0 * d * es, f * d * es, in, layer.dtype, &layer.gate.name});
    in += f * d * es;
  }
  s.push_back({layer.up.offsets[e] + f0 * d * es, f * d * es, in, layer.dtype, &layer.up.name});
  // out: [d, full], columns f0..f0+f: one run when whole, else one per row.
  const auto full = static_cast<std::size_t>(layer.down.cols);
  if (f == full) {
    s.push_back({layer.down.offsets[e], d * f * es, out, layer.dtype, &layer.down.name});
  } else {
    for (std::size_t r = 0; r < d; ++r)
      s.push_back(
          {layer.down.offsets[e] + (r * full + f0) * es, f * es, out + r * f * es, layer.dtype, &layer.down.name});
  }
  return s;
}

void CachedExpertStore::wait_loads(Layer& layer) {
  for (uint64_t& t : layer.ticket) {
    if (t != 0) loader_->wait(t);
    t = 0;
  }
}

void CachedExpertStore::prefetch(int64_t layer_id, const std::vector<int64_t>& experts) {
  Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  if (!layer.book) return;
  // Loads of the last step that were never leased (nothing to compute after all) have landed or
  // land now; so have their reservations.
  wait_loads(layer);
  for (int32_t x = 0; x < static_cast<int32_t>(layer.local.size()); ++x)
    if (layer.book->leased(x)) layer.book->release(x);
  std::vector<int32_t> active;
  active.reserve(experts.size());
  for (int64_t e : experts) {
    const int64_t x = layer.local_of.at(static_cast<std::size_t>(e));
    MOE_CHECK(x >= 0, "layer {}: expert {} is not held by this rank", layer_id, e);
    active.push_back(static_cast<int32_t>(x));
  }
  std::sort(active.begin(), active.end());
  try {
    layer.book->begin_step(active);
  } catch (const Error& e) {
    // Only belady checks the step against its plan; say what makes them differ.
    fail(
        "layer {}: {} (the experts this rank computes differ from the trace's routed experts, e.g. a replica "
        "that got no rows); use moe.expert_cache.policy lifo or lru",
        layer_id, e.what());
  }
  for (const auto& [x, access] : layer.book->prefetch())
    if (!access.hit) layer.ticket[static_cast<std::size_t>(x)] = loader_->submit(segments(layer, x, access.slot));
}

ExpertLease CachedExpertStore::lease(int64_t layer_id, int64_t expert) {
  Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  const int64_t x = expert >= 0 && expert < static_cast<int64_t>(layer.local_of.size())
                        ? layer.local_of[static_cast<std::size_t>(expert)]
                        : -1;
  MOE_CHECK(x >= 0, "layer {}: expert {} is not held by this rank", layer_id, expert);
  const ExpertSlotAccess access = layer.book->acquire(static_cast<int32_t>(x));
  uint64_t& ticket = layer.ticket[static_cast<std::size_t>(x)];
  if (!access.hit && ticket == 0) ticket = loader_->submit(segments(layer, x, access.slot));
  if (ticket != 0) {
    if (!loader_->done(ticket)) {
      const double t0 = now_seconds();
      loader_->wait(ticket);
      layer.book->add_stall(now_seconds() - t0);
    }
    loader_->wait(ticket);  // reports a failed load
    ticket = 0;
  }
  const LocalExpert& le = layer.local[static_cast<std::size_t>(x)];
  const int64_t f = le.ffn();
  const int64_t in_rows = activation_ == ActivationKind::swiglu ? 2 * f : f;
  const auto slot = static_cast<std::size_t>(access.slot);
  ExpertWeights w;
  w.in = {layer.in.as<std::byte>() + slot * layer.in_bytes, layer.dtype, in_rows, hidden_, hidden_};
  w.out = {layer.out.as<std::byte>() + slot * layer.out_bytes, layer.dtype, hidden_, f, f};
  if (!access.hit) ++stats_.misses;
  return make_lease(layer_id, expert, w);
}

void CachedExpertStore::release(int64_t layer_id, int64_t expert) noexcept {
  Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  const int64_t x = layer.local_of[static_cast<std::size_t>(expert)];
  try {
    layer.book->release(static_cast<int32_t>(x));
  } catch (...) {
    // Only a lease released twice gets here; the book stays as it was.
  }
}

std::vector<ExpertCacheLayerStats> CachedExpertStore::cache_stats() const {
  std::vector<ExpertCacheLayerStats> out;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    if (layer.local_of.empty()) continue;  // dense layer
    ExpertCacheLayerStats s;
    s.layer = static_cast<int64_t>(i);
    s.slots = layer.slots;
    if (layer.book) s.stats = layer.book->stats();
    s.resident_bytes = (layer.in_bytes + layer.out_bytes) * static_cast<std::size_t>(layer.slots);
    out.push_back(s);
  }
  return out;
}

RequestSteps local_request_steps(const RoutingTrace& trace, int64_t layer, const std::vector<LocalExpert>& local,
                                 const std::vector<std::vector<int64_t>>& step_batches) {
  const TraceLayer& t = trace.layer(layer);
  std::vector<int64_t> row_of(static_cast<std::size_t>(trace.num_batches), -1);
  for (std::size_t r = 0; r < trace.batch_ids.size(); ++r)
    row_of[static_cast<std::size_t>(trace.batch_ids[r])] = static_cast<int64_t>(r);
  RequestSteps steps;
  steps.reserve(step_batches.size());
  for (const std::vector<int64_t>& batches : step_batches) {
    std::vector<int32_t>& active = steps.emplace_back();
    for (std::size_t x = 0; x < local.size(); ++x) {
      bool routed = false;
      for (int64_t b : batches) {
        if (b < 0) continue;
        MOE_CHECK(b < trace.num_batches && row_of[static_cast<std::size_t>(b)] >= 0, "{}: the trace has no batch {}",
                  trace.path, b);
        routed = routed || t.batches[static_cast<std::size_t>(row_of[static_cast<std::size_t>(b)])]
                                    [static_cast<std::size_t>(local[x].expert)] > 0;
      }
      if (routed) active.push_back(static_cast<int32_t>(x));
    }
  }
  return steps;
}

}  // namespace moe
