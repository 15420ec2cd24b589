#include "moe/expert_store.hpp"

#include <cstring>

#include "core/error.hpp"
#include "io/checkpoint_upload.hpp"

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
    const bool swiglu = c.activation == ActivationKind::swiglu;
    layer.dtype = ckpt.dtype(p + "up_proj");
    MOE_CHECK(ckpt.dtype(p + "down_proj") == layer.dtype, "{}: {}down_proj and up_proj differ in dtype", ckpt.path(),
              p);
    MOE_CHECK(!swiglu || ckpt.dtype(p + "gate_proj") == layer.dtype, "{}: {}gate_proj and up_proj differ in dtype",
              ckpt.path(), p);
    // Experts whose three boxes lie in place in the mapped checkpoint are used there. The rest get
    // one buffer for their input weights (fused per expert: its gate rows, then its up rows, so
    // that one GEMM makes both) and one for their output weights, each expert's boxes read
    // straight into place (io/checkpoint_upload.hpp).
    const bool try_map = ckpt.map_weights() && backend.reads_host_weights_in_place(layer.dtype);
    const std::size_t element = dtype_size(layer.dtype);
    std::size_t in_total = 0, out_total = 0;
    for (const LocalExpert& x : local) {
      const int64_t f0 = x.ffn_begin, f = x.ffn();
      const std::vector<int64_t> in_shape{e, full, d}, in_at{x.expert, f0, 0}, in_box{1, f, d};
      const std::vector<int64_t> out_shape{e, d, full}, out_at{x.expert, 0, f0}, out_box{1, d, f};
      layer.local_of[static_cast<std::size_t>(x.expert)] = static_cast<int64_t>(layer.experts.size());
      Local& at = layer.experts.emplace_back(Local{x.ffn(), in_total, out_total});
      if (try_map && (!swiglu || ckpt.can_map(p + "gate_proj", in_shape, in_at, in_box)) &&
          ckpt.can_map(p + "up_proj", in_shape, in_at, in_box) &&
          ckpt.can_map(p + "down_proj", out_shape, out_at, out_box)) {
        if (swiglu) at.gate_at = ckpt.map_box(p + "gate_proj", in_shape, in_at, in_box);
        at.up_at = ckpt.map_box(p + "up_proj", in_shape, in_at, in_box);
        at.down_at = ckpt.map_box(p + "down_proj", out_shape, out_at, out_box);
        mapped_ = ckpt.mapping();
        mapped_bytes_ += (swiglu ? 3 : 2) * static_cast<std::size_t>(f * d) * element;
        continue;
      }
      const auto block = static_cast<std::size_t>(f * d) * element;
      in_total += (swiglu ? 2 : 1) * block;
      out_total += block;
    }
    if (in_total > 0) {
      layer.in = backend.alloc(in_total);
      layer.out = backend.alloc(out_total);
    }
    for (std::size_t n = 0; n < local.size(); ++n) {
      const LocalExpert& x = local[n];
      const Local& at = layer.experts[n];
      if (at.up_at != nullptr) continue;
      const int64_t f0 = x.ffn_begin, f = x.ffn();
      const auto block = static_cast<std::size_t>(f * d) * element;
      std::byte* in = layer.in.as<std::byte>() + at.in;
      if (swiglu) {
        read_to_backend(ckpt, backend, p + "gate_proj", {e, full, d}, {x.expert, f0, 0}, {1, f, d}, in, block);
        in += block;
      }
      read_to_backend(ckpt, backend, p + "up_proj", {e, full, d}, {x.expert, f0, 0}, {1, f, d}, in, block);
      read_to_backend(ckpt, backend, p + "down_proj", {e, d, full}, {x.expert, 0, f0}, {1, d, f},
                      layer.out.as<std::byte>() + at.out, block);
    }
    bytes_ += in_total + out_total;
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
  if (x.up_at != nullptr) {
    if (activation_ == ActivationKind::swiglu) {
      w.in = {x.gate_at, layer.dtype, x.ffn, hidden_, hidden_};
      w.up = {x.up_at, layer.dtype, x.ffn, hidden_, hidden_};
    } else {
      w.in = {x.up_at, layer.dtype, x.ffn, hidden_, hidden_};
    }
    w.out = {x.down_at, layer.dtype, hidden_, x.ffn, x.ffn};
    return make_lease(layer_id, expert, w);
  }
  w.in = {layer.in.as<std::byte>() + x.in, layer.dtype, in_rows, hidden_, hidden_};
  w.out = {layer.out.as<std::byte>() + x.out, layer.dtype, hidden_, x.ffn, x.ffn};
  return make_lease(layer_id, expert, w);
}

}  // namespace moe
