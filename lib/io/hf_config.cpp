#include "io/hf_config.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.hpp"
#include "core/input_file.hpp"

namespace moe {

namespace {

using nlohmann::json;

// Real config.json files are a few KiB; the limit bounds what parsing a hostile one can cost.
constexpr std::size_t kMaxHfConfigBytes = 1u << 20;

// Typed access to config.json; a missing or null optional key takes transformers' default for
// that architecture (what its configuration class would fill in).
class JsonKeys {
 public:
  JsonKeys(const json& j, const std::string& source) : j_(j), source_(source) {}

  bool is_set(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }

  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!is_set(key)) return required(key, fallback);
    const json& v = j_[key];
    MOE_CHECK(fits_int64(v), "{}: key '{}' must be an integer, got {}", source_, key, v.dump());
    return v.get<int64_t>();
  }
  double real(const std::string& key, std::optional<double> fallback = std::nullopt) const {
    if (!is_set(key)) return required(key, fallback);
    const json& v = j_[key];
    MOE_CHECK(v.is_number(), "{}: key '{}' must be a number, got {}", source_, key, v.dump());
    return v.get<double>();
  }
  bool flag(const std::string& key, bool fallback) const {
    if (!is_set(key)) return fallback;
    const json& v = j_[key];
    MOE_CHECK(v.is_boolean(), "{}: key '{}' must be true or false, got {}", source_, key, v.dump());
    return v.get<bool>();
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    if (!is_set(key)) return fallback;
    const json& v = j_[key];
    MOE_CHECK(v.is_string(), "{}: key '{}' must be a string, got {}", source_, key, v.dump());
    return v.get<std::string>();
  }
  std::vector<int64_t> integers(const std::string& key) const {
    std::vector<int64_t> out;
    if (!is_set(key)) return out;
    const json& v = j_[key];
    MOE_CHECK(v.is_array(), "{}: key '{}' must be a list of integers, got {}", source_, key, v.dump());
    for (const json& x : v) {
      MOE_CHECK(fits_int64(x), "{}: key '{}' must be a list of integers, got {}", source_, key, v.dump());
      out.push_back(x.get<int64_t>());
    }
    return out;
  }
  // Refuses a key whose value would change the computation in a way we do not implement.
  void require_unset(const std::string& key, const char* why) const {
    MOE_CHECK(!is_set(key), "{}: key '{}' = {} is not supported ({})", source_, key, j_[key].dump(), why);
  }
  void require_false(const std::string& key, const char* why) const {
    MOE_CHECK(!flag(key, false), "{}: key '{}' = true is not supported ({})", source_, key, why);
  }
  const std::string& source() const { return source_; }
  const json& get(const std::string& key) const { return j_[key]; }

 private:
  // An integer that get<int64_t> returns unchanged (an unsigned one past INT64_MAX would wrap).
  static bool fits_int64(const json& v) {
    return v.is_number_integer() &&
           (!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
  }
  template <typename T>
  T required(const std::string& key, const std::optional<T>& fallback) const {
    MOE_CHECK(fallback.has_value(), "{}: missing key '{}'", source_, key);
    return *fallback;
  }
  const json& j_;
  const std::string& source_;
};

// Defaults of one architecture's configuration class, for the keys that have one.
struct Defaults {
  double rms_norm_eps;
  double rope_theta;
  int64_t max_positions;
  std::optional<int64_t> num_kv_heads;  // nullopt: num_attention_heads
};

// Newer transformers versions save RoPE as `rope_parameters: {rope_type, rope_theta}`; only
// the default (unscaled) type is implemented.
double rope_parameters_theta(const JsonKeys& k, double theta) {
  const json& p = k.get("rope_parameters");
  MOE_CHECK(p.is_object(), "{}: key 'rope_parameters' must be an object", k.source());
  const JsonKeys params(p, k.source());
  const std::string type = params.text("rope_type", "default");
  MOE_CHECK(type == "default", "{}: key 'rope_parameters' has rope_type '{}', not supported (default only)", k.source(),
            type);
  return params.real("rope_theta", theta);
}

// What every supported architecture shares: a Llama-style decoder (pre-RMSNorm, RoPE in the
// rotate-half layout, SwiGLU MLPs with silu, no o_proj bias).
ModelConfig common_config(const JsonKeys& k, const Defaults& d, const std::string& family) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = k.integer("vocab_size");
  c.hidden_size = k.integer("hidden_size");
  c.num_layers = k.integer("num_hidden_layers");
  // Checked before the per-layer lists are built from it (the full validation comes later).
  MOE_CHECK(c.num_layers <= kMaxLayers, "{}: key 'num_hidden_layers' is {}, more than the limit of {}", k.source(),
            c.num_layers, kMaxLayers);
  c.num_heads = k.integer("num_attention_heads");
  c.num_kv_heads = k.integer("num_key_value_heads", d.num_kv_heads ? *d.num_kv_heads : c.num_heads);
  MOE_CHECK(c.num_heads > 0, "{}: key 'num_attention_heads' must be positive", k.source());
  c.head_dim = k.integer("head_dim", c.hidden_size / c.num_heads);
  c.max_positions = k.integer("max_position_embeddings", d.max_positions);
  c.norm = NormKind::rmsnorm;
  c.norm_eps = k.real("rms_norm_eps", d.rms_norm_eps);
  c.position = PositionKind::rope;
  c.rope_theta = k.real("rope_theta", d.rope_theta);
  if (k.is_set("rope_parameters")) c.rope_theta = rope_parameters_theta(k, c.rope_theta);
  c.activation = ActivationKind::swiglu;
  c.tie_embeddings = k.flag("tie_word_embeddings", false);
  const std::string act = k.text("hidden_act", "silu");
  MOE_CHECK(act == "silu", "{}: key 'hidden_act' = '{}' is not supported (silu only)", k.source(), act);
  k.require_unset("rope_scaling", "only plain RoPE is implemented");
  return c;
}

// A sliding window changes attention only for sequences longer than the window: capping
// max_positions at the window keeps every accepted sequence exact (longer ones are refused).
void cap_at_window(ModelConfig& c, int64_t window) {
  if (window > 0 && window < c.max_positions) c.max_positions = window;
}

HfArchitecture mixtral(const JsonKeys& k) {
  HfArchitecture a{"MixtralForCausalLM",
                   common_config(k, {1e-5, 1e6, 4096 * 32, 8}, "mixtral"),
                   {"block_sparse_moe", "w1", "w3", "w2", "", false}};
  ModelConfig& c = a.config;
  c.expert_ffn = k.integer("intermediate_size");
  c.top_k = k.integer("num_experts_per_tok");
  c.router_renormalize = true;  // Mixtral always renormalises its top-k weights
  c.layer_num_experts.assign(static_cast<std::size_t>(c.num_layers), k.integer("num_local_experts"));
  if (k.is_set("sliding_window")) cap_at_window(c, k.integer("sliding_window"));
  return a;
}

HfArchitecture qwen2moe(const JsonKeys& k) {
  HfArchitecture a{"Qwen2MoeForCausalLM",
                   common_config(k, {1e-6, 10000.0, 32768, 16}, "qwen2moe"),
                   {"mlp", "gate_proj", "up_proj", "down_proj", "shared_expert", true}};
  ModelConfig& c = a.config;
  c.qkv_bias = k.flag("qkv_bias", true);  // Qwen2 attention has q/k/v biases
  c.dense_ffn = k.integer("intermediate_size");
  c.expert_ffn = k.integer("moe_intermediate_size");
  c.shared_ffn = k.integer("shared_expert_intermediate_size");
  MOE_CHECK(c.shared_ffn > 0, "{}: key 'shared_expert_intermediate_size' must be positive", k.source());
  c.shared_gate = SharedGateKind::sigmoid;
  c.top_k = k.integer("num_experts_per_tok");
  c.router_renormalize = k.flag("norm_topk_prob", false);
  const int64_t experts = k.integer("num_experts");
  const int64_t step = k.integer("decoder_sparse_step", 1);
  MOE_CHECK(step > 0, "{}: key 'decoder_sparse_step' must be positive, got {}", k.source(), step);
  const std::vector<int64_t> dense_only = k.integers("mlp_only_layers");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const bool listed = std::find(dense_only.begin(), dense_only.end(), i) != dense_only.end();
    c.layer_num_experts.push_back(!listed && experts > 0 && (i + 1) % step == 0 ? experts : 0);
  }
  if (k.flag("use_sliding_window", false)) cap_at_window(c, k.integer("sliding_window"));
  return a;
}

HfArchitecture olmoe(const JsonKeys& k) {
  HfArchitecture a{"OlmoeForCausalLM",
                   common_config(k, {1e-5, 10000.0, 4096, std::nullopt}, "olmoe"),
                   {"mlp", "gate_proj", "up_proj", "down_proj", "", false}};
  ModelConfig& c = a.config;
  k.require_false("attention_bias", "o_proj would carry a bias");
  k.require_unset("clip_qkv", "q/k/v clipping is not implemented");
  c.qk_norm = true;
  c.expert_ffn = k.integer("intermediate_size");
  c.top_k = k.integer("num_experts_per_tok");
  c.router_renormalize = k.flag("norm_topk_prob", false);
  c.layer_num_experts.assign(static_cast<std::size_t>(c.num_layers), k.integer("num_experts"));
  // transformers sizes q_norm by hidden_size and k_norm by (hidden_size / heads) * kv_heads.
  MOE_CHECK(c.num_heads * c.head_dim == c.hidden_size, "{}: OLMoE needs head_dim * num_attention_heads == hidden_size",
            k.source());
  return a;
}

HfArchitecture deepseek(const JsonKeys& k) {
  HfArchitecture a{"DeepseekForCausalLM",
                   common_config(k, {1e-6, 10000.0, 2048, std::nullopt}, "deepseek"),
                   {"mlp", "gate_proj", "up_proj", "down_proj", "shared_experts", false}};
  ModelConfig& c = a.config;
  k.require_false("attention_bias", "o_proj would carry a bias");
  const std::string scoring = k.text("scoring_func", "softmax");
  MOE_CHECK(scoring == "softmax", "{}: key 'scoring_func' = '{}' is not supported (softmax only)", k.source(), scoring);
  c.dense_ffn = k.integer("intermediate_size");
  const int64_t experts = k.integer("n_routed_experts", 0);  // null: every layer dense
  if (experts > 0) {
    c.expert_ffn = k.integer("moe_intermediate_size");
    c.top_k = k.integer("num_experts_per_tok");
    // N shared experts of size F run as one MLP of size N*F (their outputs are summed).
    c.shared_ffn = k.integer("n_shared_experts", 0) * c.expert_ffn;
  }
  // DeepSeek's MoEGate renormalises only when top_k > 1 (a single weight stays p, not 1).
  c.router_renormalize = k.flag("norm_topk_prob", false) && c.top_k > 1;
  const int64_t first_dense = k.integer("first_k_dense_replace", 0);
  const int64_t freq = k.integer("moe_layer_freq", 1);
  MOE_CHECK(freq > 0, "{}: key 'moe_layer_freq' must be positive, got {}", k.source(), freq);
  for (int64_t i = 0; i < c.num_layers; ++i)
    c.layer_num_experts.push_back(experts > 0 && i >= first_dense && i % freq == 0 ? experts : 0);
  return a;
}

}  // namespace

std::vector<std::string> hf_supported_architectures() {
  return {"MixtralForCausalLM", "Qwen2MoeForCausalLM", "OlmoeForCausalLM", "DeepseekForCausalLM"};
}

HfArchitecture read_hf_config(const std::string& config_path) {
  const std::string text = read_small_file(config_path, kMaxHfConfigBytes, "config.json");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON ({})", config_path, e.what());
  }
  MOE_CHECK(j.is_object(), "{}: not a JSON object", config_path);
  const JsonKeys keys(j, config_path);
  MOE_CHECK(j.contains("architectures") && j["architectures"].is_array() && j["architectures"].size() == 1 &&
                j["architectures"][0].is_string(),
            "{}: key 'architectures' must list exactly one architecture", config_path);
  const std::string name = j["architectures"][0].get<std::string>();
  HfArchitecture a;
  if (name == "MixtralForCausalLM")
    a = mixtral(keys);
  else if (name == "Qwen2MoeForCausalLM")
    a = qwen2moe(keys);
  else if (name == "OlmoeForCausalLM")
    a = olmoe(keys);
  else if (name == "DeepseekForCausalLM")
    a = deepseek(keys);
  else {
    std::string valid;
    for (const std::string& s : hf_supported_architectures()) valid += (valid.empty() ? "" : ", ") + s;
    fail("{}: architecture '{}' is not supported (supported: {})", config_path, name, valid);
  }
  // The same validation as a checkpoint's attributes, so a bad config.json fails here.
  a.config = ModelConfig::from_attributes(a.config.to_attributes(), config_path);
  return a;
}

}  // namespace moe
