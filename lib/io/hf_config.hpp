#pragma once
// Hugging Face `config.json` -> ModelConfig for the MoE architectures we import, and the tensor
// names each architecture uses (docs/models.md lists the conventions). Keys that change the
// computation in ways we do not implement (rope_scaling, attention biases on o_proj, clip_qkv,
// activations other than silu, ...) are refused with a message naming the key and the file.
#include <string>
#include <vector>

#include "config/model_config.hpp"

namespace moe {

// Where an architecture keeps its MoE tensors under model.layers.{i}.
struct HfNaming {
  std::string moe_block;            // "block_sparse_moe" (Mixtral) or "mlp"
  std::string expert_gate;          // "w1" or "gate_proj"
  std::string expert_up;            // "w3" or "up_proj"
  std::string expert_down;          // "w2" or "down_proj"
  std::string shared_expert;        // "shared_expert", "shared_experts" or "" (none)
  bool shared_expert_gate = false;  // mlp.shared_expert_gate.weight (Qwen2-MoE)
};

struct HfArchitecture {
  std::string name;  // e.g. "MixtralForCausalLM"
  ModelConfig config;
  HfNaming naming;
};

// The architectures moe-convert understands, for messages and docs.
std::vector<std::string> hf_supported_architectures();

// Reads and maps `config_path` (a config.json); every error names the file and the key.
HfArchitecture read_hf_config(const std::string& config_path);

}  // namespace moe
