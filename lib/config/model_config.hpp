#pragma once
// The model architecture: one description covers the Mixtral-like, Qwen2-MoE/DeepSeek-MoE-like
// and GPT-MoE/PR-MoE-like families through options (docs/formats.md lists every key).
#include <cstdint>
#include <string>
#include <vector>

#include "config/attributes.hpp"

namespace YAML {
class Node;
}

namespace moe {

enum class NormKind { rmsnorm, layernorm };
enum class PositionKind { rope, learned };
enum class ActivationKind { swiglu, gelu };
enum class SharedGateKind { none, sigmoid };

// Limits far above any published model, so that a tiny hostile file cannot make the program
// allocate or loop without bound before anything is read (docs/formats.md lists them).
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxExpertsPerLayer = 65536;
inline constexpr int64_t kMaxDimension = int64_t{1} << 20;  // hidden, ffn, heads x head_dim
inline constexpr int64_t kMaxPositions = int64_t{1} << 31;
inline constexpr double kMaxParameters = 1e14;

struct ModelConfig {
  std::string family = "custom";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  NormKind norm = NormKind::rmsnorm;
  double norm_eps = 1e-5;
  PositionKind position = PositionKind::rope;
  double rope_theta = 10000.0;
  bool qkv_bias = false;
  bool qk_norm = false;  // RMSNorm over the whole projected q [H*hd] and k [KV*hd] rows (OLMoE)
  ActivationKind activation = ActivationKind::swiglu;
  int64_t dense_ffn = 0;
  int64_t expert_ffn = 0;
  int64_t top_k = 1;
  bool router_renormalize = false;
  int64_t shared_ffn = 0;
  SharedGateKind shared_gate = SharedGateKind::none;
  bool tie_embeddings = false;
  std::vector<int64_t> layer_num_experts;  // per layer; 0 = dense MLP layer

  bool is_moe_layer(int64_t layer) const { return layer_num_experts[static_cast<std::size_t>(layer)] > 0; }
  int64_t num_experts(int64_t layer) const { return layer_num_experts[static_cast<std::size_t>(layer)]; }
  // Rows of the first MLP matrix: gate and up fused for swiglu.
  int64_t mlp_in_rows(int64_t ffn) const { return activation == ActivationKind::swiglu ? 2 * ffn : ffn; }

  // Parses and validates; `source` (a file name) starts every error message.
  static ModelConfig from_attributes(const AttrMap& attrs, const std::string& source);
  // A model spec (inputs/*.yaml): the attribute keys, plus the shorthand `num_experts`,
  // `moe_every` and `first_dense` in place of `layer_num_experts`.
  static ModelConfig from_yaml(const YAML::Node& node, const std::string& source);
  AttrMap to_attributes() const;
  // Total parameter count (for reports).
  int64_t parameter_count() const;
};

}  // namespace moe
