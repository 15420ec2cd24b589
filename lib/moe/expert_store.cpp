#include "moe/expert_store.hpp"

#include <cstring>

#include "core/error.hpp"

namespace moe {

std::vector<std::pair<int64_t, int64_t>> all_experts(const ModelConfig& config) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t i = 0; i < config.num_layers; ++i) ranges.emplace_back(0, config.num_experts(i));
  return ranges;
}

ResidentExpertStore::ResidentExpertStore(CheckpointReader& ckpt, Backend& backend,
                                         const std::vector<std::pair<int64_t, int64_t>>& expert_ranges,
                                         const std::vector<std::pair<int64_t, int64_t>>& ffn_ranges) {
  const ModelConfig& c = ckpt.config();
  hidden_ = c.hidden_size;
  const int64_t d = hidden_;
  const int64_t full = c.expert_ffn;
  layers_.resize(static_cast<std::size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer& layer = layers_[static_cast<std::size_t>(i)];
    if (!c.is_moe_layer(i)) continue;
    const auto [first, count] = expert_ranges[static_cast<std::size_t>(i)];
    MOE_CHECK(first >= 0 && count >= 0 && first + count <= c.num_experts(i),
              "layer {}: expert range [{}, {}) is outside its {} experts", i, first, first + count, c.num_experts(i));
    const auto [f0, f1] =
        ffn_ranges.empty() ? std::pair<int64_t, int64_t>{0, full} : ffn_ranges[static_cast<std::size_t>(i)];
    MOE_CHECK(0 <= f0 && f0 < f1 && f1 <= full, "layer {}: FFN slice [{}, {}) is outside its {} columns", i, f0, f1,
              full);
    const int64_t f = f1 - f0;
    layer.first = first;
    layer.count = count;
    layer.ffn = f;
    layer.in_rows = c.mlp_in_rows(f);
    if (count == 0) continue;
    const std::string p = "layers/" + std::to_string(i) + "/moe/experts/";
    const int64_t e = c.num_experts(i);
    // Fused per expert: its gate rows, then its up rows, so that one GEMM makes both.
    const HostTensor up = ckpt.read(p + "up_proj", {e, full, d}, {first, f0, 0}, {count, f, d});
    HostTensor in;
    if (c.activation == ActivationKind::swiglu) {
      const HostTensor gate = ckpt.read(p + "gate_proj", {e, full, d}, {first, f0, 0}, {count, f, d});
      MOE_CHECK(gate.dtype == up.dtype, "{}: {}gate_proj and up_proj differ in dtype", ckpt.path(), p);
      in.dtype = up.dtype;
      const std::size_t block = static_cast<std::size_t>(f * d) * dtype_size(up.dtype);
      in.bytes.resize(2 * block * static_cast<std::size_t>(count));
      for (int64_t x = 0; x < count; ++x) {
        std::memcpy(in.bytes.data() + (2 * x) * block, gate.bytes.data() + x * block, block);
        std::memcpy(in.bytes.data() + (2 * x + 1) * block, up.bytes.data() + x * block, block);
      }
    } else {
      in = up;
    }
    const HostTensor out = ckpt.read(p + "down_proj", {e, d, full}, {first, 0, f0}, {count, d, f});
    MOE_CHECK(out.dtype == up.dtype, "{}: {}down_proj and up_proj differ in dtype", ckpt.path(), p);
    layer.dtype = up.dtype;
    layer.in = backend.alloc(in.bytes.size());
    backend.copy_to_device(layer.in.data(), in.bytes.data(), in.bytes.size());
    layer.out = backend.alloc(out.bytes.size());
    backend.copy_to_device(layer.out.data(), out.bytes.data(), out.bytes.size());
    bytes_ += in.bytes.size() + out.bytes.size();
  }
}

ExpertWeights ResidentExpertStore::acquire(int64_t layer_id, int64_t expert) {
  const Layer& layer = layers_[static_cast<std::size_t>(layer_id)];
  const int64_t local = expert - layer.first;
  MOE_CHECK(local >= 0 && local < layer.count, "layer {}: expert {} is not held by this rank", layer_id, expert);
  ++stats_.acquires;
  const std::size_t elem = dtype_size(layer.dtype);
  ExpertWeights w;
  w.in = {layer.in.as<std::byte>() + local * layer.in_rows * hidden_ * static_cast<int64_t>(elem), layer.dtype,
          layer.in_rows, hidden_, hidden_};
  w.out = {layer.out.as<std::byte>() + local * hidden_ * layer.ffn * static_cast<int64_t>(elem), layer.dtype, hidden_,
           layer.ffn, layer.ffn};
  return w;
}

}  // namespace moe
