#include "moe/expert_store.hpp"

#include <cstring>

#include "core/error.hpp"

namespace moe {

ExpertLease& ExpertLease::operator=(ExpertLease&& o) noexcept {
  if (this != &o) {
    release();
    store_ = o.store_;
    layer_ = o.layer_;
    expert_ = o.expert_;
    weights_ = o.weights_;
    o.store_ = nullptr;
  }
  return *this;
}

void ExpertLease::release() noexcept {
  if (store_ == nullptr) return;
  --store_->outstanding_;
  store_->release(layer_, expert_);
  store_ = nullptr;
}

ResidentExpertStore::ResidentExpertStore(CheckpointReader& ckpt, Backend& backend, const ExpertPlacement& placement,
                                         int rank) {
  const ModelConfig& c = ckpt.config();
  hidden_ = c.hidden_size;
  activation_ = c.activation;
  const int64_t d = hidden_;
  const int64_t full = c.expert_ffn;
  MOE_CHECK(placement.num_layers() == c.num_layers, "expert store: placement has {} layers, the model {}",
            placement.num_layers(), c.num_layers);
  layers_.resize(static_cast<std::size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    if (!c.is_moe_layer(i)) continue;
    Layer& layer = layers_[static_cast<std::size_t>(i)];
    const int64_t e = c.num_experts(i);
    const std::vector<LocalExpert>& local = placement.local_experts(i, rank);
    layer.local_of.assign(static_cast<std::size_t>(e), -1);
    if (local.empty()) continue;
    const std::string p = "layers/" + std::to_string(i) + "/moe/experts/";
    std::vector<std::byte> in_bytes, out_bytes;
    // Consecutive expert ids with the same columns are one hyperslab read (the contiguous default
    // reads each tensor once, as before).
    for (std::size_t first = 0; first < local.size();) {
      std::size_t end = first + 1;
      while (end < local.size() && local[end].expert == local[end - 1].expert + 1 &&
             local[end].ffn_begin == local[first].ffn_begin && local[end].ffn_end == local[first].ffn_end)
        ++end;
      const int64_t x0 = local[first].expert, count = static_cast<int64_t>(end - first);
      const int64_t f0 = local[first].ffn_begin, f = local[first].ffn();
      const HostTensor up = ckpt.read(p + "up_proj", {e, full, d}, {x0, f0, 0}, {count, f, d});
      const HostTensor out = ckpt.read(p + "down_proj", {e, d, full}, {x0, 0, f0}, {count, d, f});
      MOE_CHECK(out.dtype == up.dtype, "{}: {}down_proj and up_proj differ in dtype", ckpt.path(), p);
      MOE_CHECK(layer.experts.empty() || up.dtype == layer.dtype, "{}: {} experts differ in dtype", ckpt.path(), p);
      layer.dtype = up.dtype;
      HostTensor gate;
      if (c.activation == ActivationKind::swiglu) {
        gate = ckpt.read(p + "gate_proj", {e, full, d}, {x0, f0, 0}, {count, f, d});
        MOE_CHECK(gate.dtype == up.dtype, "{}: {}gate_proj and up_proj differ in dtype", ckpt.path(), p);
      }
      const std::size_t block = static_cast<std::size_t>(f * d) * dtype_size(up.dtype);
      for (int64_t x = 0; x < count; ++x) {
        layer.local_of[static_cast<std::size_t>(x0 + x)] = static_cast<int64_t>(layer.experts.size());
        layer.experts.push_back({f, in_bytes.size(), out_bytes.size()});
        // Fused per expert: its gate rows, then its up rows, so that one GEMM makes both.
        if (c.activation == ActivationKind::swiglu)
          in_bytes.insert(in_bytes.end(), gate.bytes.begin() + x * block, gate.bytes.begin() + (x + 1) * block);
        in_bytes.insert(in_bytes.end(), up.bytes.begin() + x * block, up.bytes.begin() + (x + 1) * block);
        out_bytes.insert(out_bytes.end(), out.bytes.begin() + x * block, out.bytes.begin() + (x + 1) * block);
      }
      first = end;
    }
    layer.in = backend.alloc(in_bytes.size());
    backend.copy_to_device(layer.in.data(), in_bytes.data(), in_bytes.size());
    layer.out = backend.alloc(out_bytes.size());
    backend.copy_to_device(layer.out.data(), out_bytes.data(), out_bytes.size());
    bytes_ += in_bytes.size() + out_bytes.size();
  }
}

int64_t ResidentExpertStore::expert_ffn(int64_t layer_id, int64_t expert) const {
  const Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  const int64_t x = layer.local_of.at(static_cast<std::size_t>(expert));
  MOE_CHECK(x >= 0, "layer {}: expert {} is not held by this rank", layer_id, expert);
  return layer.experts[static_cast<std::size_t>(x)].ffn;
}

ExpertLease ResidentExpertStore::lease(int64_t layer_id, int64_t expert) {
  const Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  MOE_CHECK(expert >= 0 && expert < static_cast<int64_t>(layer.local_of.size()) &&
                layer.local_of[static_cast<std::size_t>(expert)] >= 0,
            "layer {}: expert {} is not held by this rank", layer_id, expert);
  const Local& x = layer.experts[static_cast<std::size_t>(layer.local_of[static_cast<std::size_t>(expert)])];
  const int64_t in_rows = activation_ == ActivationKind::swiglu ? 2 * x.ffn : x.ffn;
  ExpertWeights w;
  w.in = {layer.in.as<std::byte>() + x.in, layer.dtype, in_rows, hidden_, hidden_};
  w.out = {layer.out.as<std::byte>() + x.out, layer.dtype, hidden_, x.ffn, x.ffn};
  return make_lease(layer_id, expert, w);
}

}  // namespace moe
