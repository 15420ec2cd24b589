#include "config/model_config.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <optional>
#include <set>

#include "core/error.hpp"

namespace moe {

namespace {

constexpr const char* kFormat = "moebatch-checkpoint";
constexpr int64_t kFormatVersion = 1;

// Reads typed values out of an AttrMap, naming the source and key in every error, and
// remembers which keys were used so that unknown keys can be reported.
class AttrReader {
 public:
  AttrReader(const AttrMap& attrs, const std::string& source) : attrs_(attrs), source_(source) {}

  const AttrValue* find(const std::string& key) {
    used_.insert(key);
    auto it = attrs_.find(key);
    return it == attrs_.end() ? nullptr : &it->second;
  }
  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) {
    const AttrValue* v = find(key);
    if (!v) return required(key, fallback);
    if (auto* i = std::get_if<int64_t>(v)) return *i;
    fail("{}: attribute '{}' must be an integer", source_, key);
  }
  double real(const std::string& key, std::optional<double> fallback = std::nullopt) {
    const AttrValue* v = find(key);
    if (!v) return required(key, fallback);
    if (auto* d = std::get_if<double>(v)) return *d;
    if (auto* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
    fail("{}: attribute '{}' must be a number", source_, key);
  }
  bool flag(const std::string& key, std::optional<bool> fallback = std::nullopt) {
    const int64_t v = integer(key, fallback ? std::optional<int64_t>(*fallback ? 1 : 0) : std::nullopt);
    MOE_CHECK(v == 0 || v == 1, "{}: attribute '{}' must be 0 or 1, got {}", source_, key, v);
    return v == 1;
  }
  std::string text(const std::string& key, std::optional<std::string> fallback = std::nullopt) {
    const AttrValue* v = find(key);
    if (!v) return required(key, fallback);
    if (auto* s = std::get_if<std::string>(v)) return *s;
    fail("{}: attribute '{}' must be a string", source_, key);
  }
  std::vector<int64_t> integers(const std::string& key) {
    const AttrValue* v = find(key);
    MOE_CHECK(v, "{}: missing attribute '{}'", source_, key);
    if (auto* list = std::get_if<std::vector<int64_t>>(v)) return *list;
    if (auto* i = std::get_if<int64_t>(v)) return {*i};
    fail("{}: attribute '{}' must be a list of integers", source_, key);
  }
  template <typename Enum>
  Enum choice(const std::string& key, std::initializer_list<std::pair<const char*, Enum>> options,
              std::optional<std::string> fallback = std::nullopt) {
    const std::string value = text(key, fallback);
    std::string valid;
    for (const auto& [name, e] : options) {
      if (value == name) return e;
      valid += valid.empty() ? name : std::string(", ") + name;
    }
    fail("{}: attribute '{}' has unknown value '{}' (valid: {})", source_, key, value, valid);
  }
  void reject_unknown() const {
    for (const auto& [key, value] : attrs_) MOE_CHECK(used_.count(key), "{}: unknown model key '{}'", source_, key);
  }

 private:
  template <typename T>
  T required(const std::string& key, const std::optional<T>& fallback) {
    MOE_CHECK(fallback.has_value(), "{}: missing attribute '{}'", source_, key);
    return *fallback;
  }

  const AttrMap& attrs_;
  const std::string& source_;
  std::set<std::string> used_;
};

void validate(const ModelConfig& c, const std::string& source) {
  auto positive = [&](const char* key, int64_t v) {
    MOE_CHECK(v > 0, "{}: '{}' must be positive, got {}", source, key, v);
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("num_layers", c.num_layers);
  positive("num_heads", c.num_heads);
  positive("num_kv_heads", c.num_kv_heads);
  positive("head_dim", c.head_dim);
  positive("max_positions", c.max_positions);
  positive("top_k", c.top_k);
  auto at_most = [&](const char* key, int64_t v, int64_t limit) {
    MOE_CHECK(v <= limit, "{}: '{}' is {}, more than the limit of {}", source, key, v, limit);
  };
  at_most("num_layers", c.num_layers, kMaxLayers);
  at_most("hidden_size", c.hidden_size, kMaxDimension);
  at_most("num_heads", c.num_heads, kMaxDimension);
  at_most("head_dim", c.head_dim, kMaxDimension);
  at_most("num_heads * head_dim", c.num_heads * c.head_dim, kMaxDimension);
  at_most("num_kv_heads", c.num_kv_heads, c.num_heads);
  at_most("dense_ffn", c.dense_ffn, kMaxDimension);
  at_most("expert_ffn", c.expert_ffn, kMaxDimension);
  at_most("shared_ffn", c.shared_ffn, kMaxDimension);
  at_most("max_positions", c.max_positions, kMaxPositions);
  MOE_CHECK(c.vocab_size <= INT32_MAX, "{}: vocab_size {} does not fit token ids (int32)", source, c.vocab_size);
  MOE_CHECK(c.num_heads % c.num_kv_heads == 0, "{}: num_heads {} is not a multiple of num_kv_heads {}", source,
            c.num_heads, c.num_kv_heads);
  MOE_CHECK(c.position != PositionKind::rope || c.head_dim % 2 == 0, "{}: head_dim {} must be even for rope", source,
            c.head_dim);
  MOE_CHECK(c.norm_eps > 0 && std::isfinite(c.norm_eps), "{}: 'norm_eps' must be positive, got {}", source, c.norm_eps);
  MOE_CHECK(c.rope_theta > 0 && std::isfinite(c.rope_theta), "{}: 'rope_theta' must be positive, got {}", source,
            c.rope_theta);
  MOE_CHECK(static_cast<int64_t>(c.layer_num_experts.size()) == c.num_layers,
            "{}: 'layer_num_experts' has {} entries but num_layers is {}", source, c.layer_num_experts.size(),
            c.num_layers);
  bool any_dense = false;
  bool any_moe = false;
  for (std::size_t i = 0; i < c.layer_num_experts.size(); ++i) {
    const int64_t e = c.layer_num_experts[i];
    MOE_CHECK(e >= 0, "{}: layer_num_experts[{}] is negative ({})", source, i, e);
    MOE_CHECK(e <= kMaxExpertsPerLayer, "{}: layer_num_experts[{}] is {}, more than the limit of {}", source, i, e,
              kMaxExpertsPerLayer);
    MOE_CHECK(e == 0 || e >= c.top_k, "{}: layer {} has {} experts, fewer than top_k {}", source, i, e, c.top_k);
    any_dense = any_dense || e == 0;
    any_moe = any_moe || e > 0;
  }
  if (any_dense) positive("dense_ffn", c.dense_ffn);
  if (any_moe) positive("expert_ffn", c.expert_ffn);
  // Every size above is bounded, so this sum of products cannot overflow int64 (each term is below
  // 2^16 x 2^21 x 2^20); the limit keeps every tensor's element count far inside int64 too.
  const double params = static_cast<double>(c.parameter_count());
  MOE_CHECK(params <= kMaxParameters, "{}: the architecture has {:.3g} parameters, more than the limit of {:.0e}",
            source, params, kMaxParameters);
  MOE_CHECK(!c.qk_norm || c.norm == NormKind::rmsnorm, "{}: 'qk_norm' needs norm = rmsnorm", source);
  MOE_CHECK(c.shared_ffn >= 0, "{}: 'shared_ffn' must be >= 0, got {}", source, c.shared_ffn);
  MOE_CHECK(c.shared_gate == SharedGateKind::none || c.shared_ffn > 0,
            "{}: 'shared_gate' is sigmoid but there is no shared MLP (shared_ffn = 0)", source);
}

AttrValue yaml_to_attr(const YAML::Node& node, const std::string& key, const std::string& source) {
  if (node.IsSequence()) {
    std::vector<int64_t> list;
    for (const auto& item : node) {
      try {
        list.push_back(item.as<int64_t>());
      } catch (const YAML::Exception&) {
        fail("{}: '{}' must be a list of integers", source, key);
      }
    }
    return list;
  }
  MOE_CHECK(node.IsScalar(), "{}: '{}' must be a scalar or a list", source, key);
  const std::string text = node.Scalar();
  int64_t i = 0;
  if (YAML::convert<int64_t>::decode(node, i)) return i;
  if (text == "true" || text == "false") return int64_t{text == "true" ? 1 : 0};
  double d = 0;
  if (YAML::convert<double>::decode(node, d)) return d;
  return text;
}

}  // namespace

ModelConfig ModelConfig::from_attributes(const AttrMap& attrs, const std::string& source) {
  AttrReader r(attrs, source);
  const std::string format = r.text("format");
  MOE_CHECK(format == kFormat, "{}: attribute 'format' is '{}', expected '{}'", source, format, kFormat);
  const int64_t version = r.integer("format_version");
  MOE_CHECK(version == kFormatVersion, "{}: format_version {} is not supported (this build reads {})", source, version,
            kFormatVersion);
  ModelConfig c;
  c.family = r.text("family", "custom");
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.num_layers = r.integer("num_layers");
  c.num_heads = r.integer("num_heads");
  c.num_kv_heads = r.integer("num_kv_heads", c.num_heads);
  c.head_dim = r.integer("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.max_positions = r.integer("max_positions");
  c.norm = r.choice<NormKind>("norm", {{"rmsnorm", NormKind::rmsnorm}, {"layernorm", NormKind::layernorm}});
  c.norm_eps = r.real("norm_eps");
  c.position = r.choice<PositionKind>("position", {{"rope", PositionKind::rope}, {"learned", PositionKind::learned}});
  c.rope_theta = r.real("rope_theta", 10000.0);
  c.qkv_bias = r.flag("qkv_bias", false);
  c.qk_norm = r.flag("qk_norm", false);
  c.activation =
      r.choice<ActivationKind>("activation", {{"swiglu", ActivationKind::swiglu}, {"gelu", ActivationKind::gelu}});
  c.dense_ffn = r.integer("dense_ffn", 0);
  c.expert_ffn = r.integer("expert_ffn", 0);
  c.top_k = r.integer("top_k");
  c.router_renormalize = r.flag("router_renormalize");
  c.shared_ffn = r.integer("shared_ffn", 0);
  c.shared_gate = r.choice<SharedGateKind>(
      "shared_gate", {{"none", SharedGateKind::none}, {"sigmoid", SharedGateKind::sigmoid}}, "none");
  c.tie_embeddings = r.flag("tie_embeddings", false);
  c.layer_num_experts = r.integers("layer_num_experts");
  r.reject_unknown();
  validate(c, source);
  return c;
}

ModelConfig ModelConfig::from_yaml(const YAML::Node& node, const std::string& source) {
  MOE_CHECK(node.IsMap(), "{}: a model spec must be a YAML mapping", source);
  AttrMap attrs{{"format", std::string(kFormat)}, {"format_version", kFormatVersion}};
  std::set<std::string> seen;
  for (const auto& item : node) {
    MOE_CHECK(item.first.IsScalar(), "{}: keys must be plain names, not lists or mappings", source);
    const std::string key = item.first.Scalar();
    MOE_CHECK(seen.insert(key).second, "{}: key '{}' appears twice", source, key);
    attrs[key] = yaml_to_attr(item.second, key, source);
  }
  // Shorthand for the layer layout: MoE every `moe_every`-th layer after `first_dense` dense ones.
  if (!attrs.count("layer_num_experts") && attrs.count("num_experts")) {
    auto take = [&](const char* key, int64_t fallback) {
      auto it = attrs.find(key);
      if (it == attrs.end()) return fallback;
      auto* v = std::get_if<int64_t>(&it->second);
      MOE_CHECK(v, "{}: '{}' must be an integer", source, key);
      const int64_t value = *v;
      attrs.erase(it);
      return value;
    };
    const int64_t experts = take("num_experts", 0);
    const int64_t every = take("moe_every", 1);
    const int64_t first_dense = take("first_dense", 0);
    auto layers_it = attrs.find("num_layers");
    MOE_CHECK(layers_it != attrs.end() && std::holds_alternative<int64_t>(layers_it->second),
              "{}: missing integer 'num_layers'", source);
    MOE_CHECK(every > 0, "{}: 'moe_every' must be positive, got {}", source, every);
    MOE_CHECK(first_dense >= 0, "{}: 'first_dense' must be >= 0, got {}", source, first_dense);
    const int64_t layers = std::get<int64_t>(layers_it->second);
    MOE_CHECK(layers <= kMaxLayers, "{}: 'num_layers' is {}, more than the limit of {}", source, layers, kMaxLayers);
    std::vector<int64_t> layout;
    for (int64_t i = 0; i < layers; ++i)
      layout.push_back(i >= first_dense && (i - first_dense + 1) % every == 0 ? experts : 0);
    attrs["layer_num_experts"] = layout;
  }
  return from_attributes(attrs, source);
}

AttrMap ModelConfig::to_attributes() const {
  auto name = [](auto e, std::initializer_list<const char*> names) {
    return std::string(names.begin()[static_cast<int>(e)]);
  };
  AttrMap attrs{
      {"format", std::string(kFormat)},
      {"format_version", kFormatVersion},
      {"family", family},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"num_layers", num_layers},
      {"num_heads", num_heads},
      {"num_kv_heads", num_kv_heads},
      {"head_dim", head_dim},
      {"max_positions", max_positions},
      {"norm", name(norm, {"rmsnorm", "layernorm"})},
      {"norm_eps", norm_eps},
      {"position", name(position, {"rope", "learned"})},
      {"rope_theta", rope_theta},
      {"qkv_bias", int64_t{qkv_bias}},
      {"activation", name(activation, {"swiglu", "gelu"})},
      {"dense_ffn", dense_ffn},
      {"expert_ffn", expert_ffn},
      {"top_k", top_k},
      {"router_renormalize", int64_t{router_renormalize}},
      {"shared_ffn", shared_ffn},
      {"shared_gate", name(shared_gate, {"none", "sigmoid"})},
      {"tie_embeddings", int64_t{tie_embeddings}},
      {"layer_num_experts", layer_num_experts},
  };
  // Optional: written only when set, so checkpoints without it stay readable by older builds.
  if (qk_norm) attrs["qk_norm"] = int64_t{1};
  return attrs;
}

int64_t ModelConfig::parameter_count() const {
  const int64_t d = hidden_size;
  const int64_t norm_params = norm == NormKind::layernorm ? 2 * d : d;
  auto mlp = [&](int64_t ffn) { return (mlp_in_rows(ffn) + ffn) * d; };
  // Summed in double: per-layer terms are bounded by validate(), their sum over layers need not be.
  double total = static_cast<double>(vocab_size * d * (tie_embeddings ? 1 : 2) + norm_params);
  if (position == PositionKind::learned) total += max_positions * d;
  for (int64_t i = 0; i < num_layers; ++i) {
    total += static_cast<double>(2 * norm_params);
    total += static_cast<double>((num_heads + 2 * num_kv_heads) * head_dim * d + d * num_heads * head_dim);
    if (qkv_bias) total += static_cast<double>((num_heads + 2 * num_kv_heads) * head_dim);
    if (qk_norm) total += static_cast<double>((num_heads + num_kv_heads) * head_dim);
    if (!is_moe_layer(i)) {
      total += static_cast<double>(mlp(dense_ffn));
      continue;
    }
    total += static_cast<double>(num_experts(i) * d + num_experts(i) * mlp(expert_ffn));
    if (shared_ffn > 0)
      total += static_cast<double>(mlp(shared_ffn) + (shared_gate == SharedGateKind::sigmoid ? d : 0));
  }
  return total < 9e18 ? static_cast<int64_t>(total) : INT64_MAX;
}

}  // namespace moe
