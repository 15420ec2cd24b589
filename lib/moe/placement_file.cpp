#include "moe/placement_file.hpp"

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <type_traits>

#include "core/error.hpp"

namespace moe {

namespace {

using nlohmann::json;

const char* role_name(HolderRole role) {
  return role == HolderRole::slice ? "slice" : "replica";
}

// `v` as T: a JSON integer within T's range. nlohmann's get<T> would truncate a fraction, wrap a
// large integer (rank 4294967297 read as 1) and convert a huge float with undefined behaviour.
template <typename T>
std::optional<T> exact_integer(const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(u);
  }
  if (!v.is_number_integer()) return std::nullopt;
  const auto i = v.get<int64_t>();
  if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max()) return std::nullopt;
  return static_cast<T>(i);
}

// `node[key]` as T, or one line naming the file and the entry `where` (e.g. "layer 1 expert 3").
template <typename T>
T field(const std::string& path, const json& node, const char* key, const std::string& where) {
  const std::string at = where.empty() ? "" : where + ": ";
  MOE_CHECK(node.is_object() && node.contains(key), "{}: {}'{}' is missing", path, at, key);
  const json& v = node.at(key);
  if constexpr (std::is_integral_v<T>) {
    const std::optional<T> value = exact_integer<T>(v);
    MOE_CHECK(value.has_value(), "{}: {}'{}' must be an integer in [{}, {}], got {}", path, at, key,
              std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), v.dump());
    return *value;
  } else {
    try {
      return v.get<T>();
    } catch (const json::exception&) {
      fail("{}: {}'{}' has the wrong type ({})", path, at, key, v.dump());
    }
  }
}

json model_shape(const ModelConfig& c) {
  return {{"num_layers", c.num_layers}, {"layer_num_experts", c.layer_num_experts}, {"expert_ffn", c.expert_ffn}};
}

}  // namespace

ExpertPlacement read_placement_file(const std::string& path, const ModelConfig& config, int world) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), "{}: cannot open the placement file", path);
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: not a JSON placement file ({})", path, e.what());
  }
  const auto format = field<std::string>(path, doc, "format", "");
  MOE_CHECK(format == kPlacementFormat, "{}: format is '{}', expected '{}'", path, format, kPlacementFormat);
  const int version = field<int>(path, doc, "version", "");
  MOE_CHECK(version == kPlacementVersion, "{}: placement version {} is not supported (this build reads version {})",
            path, version, kPlacementVersion);
  const int file_world = field<int>(path, doc, "world", "");
  MOE_CHECK(file_world == world, "{}: made for world {}, this run has {} ranks", path, file_world, world);
  const json& shape = field<json>(path, doc, "model", "");
  MOE_CHECK(shape == model_shape(config), "{}: made for the model shape {}, this model is {}", path, shape.dump(),
            model_shape(config).dump());

  std::vector<std::vector<std::vector<ExpertHolder>>> holders(static_cast<std::size_t>(config.num_layers));
  for (int64_t i = 0; i < config.num_layers; ++i)
    if (config.is_moe_layer(i))
      holders[static_cast<std::size_t>(i)].resize(static_cast<std::size_t>(config.num_experts(i)));
  std::vector<bool> layer_seen(holders.size(), false);
  for (const json& layer : field<json>(path, doc, "layers", "")) {
    const auto l = field<int64_t>(path, layer, "layer", "layers[]");
    MOE_CHECK(l >= 0 && l < config.num_layers && config.is_moe_layer(l), "{}: layer {} is not a MoE layer of the model",
              path, l);
    MOE_CHECK(!layer_seen[static_cast<std::size_t>(l)], "{}: layer {} is listed twice", path, l);
    layer_seen[static_cast<std::size_t>(l)] = true;
    auto& experts = holders[static_cast<std::size_t>(l)];
    for (const json& entry : field<json>(path, layer, "experts", "layer " + std::to_string(l))) {
      const auto x = field<int64_t>(path, entry, "expert", "layer " + std::to_string(l));
      const std::string where = "layer " + std::to_string(l) + " expert " + std::to_string(x);
      MOE_CHECK(x >= 0 && x < static_cast<int64_t>(experts.size()), "{}: {}: the layer has {} experts", path, where,
                experts.size());
      auto& list = experts[static_cast<std::size_t>(x)];
      MOE_CHECK(list.empty(), "{}: {}: listed twice", path, where);
      std::size_t index = 0;
      for (const json& h : field<json>(path, entry, "holders", where)) {
        const std::string at = where + " holder " + std::to_string(index++);
        ExpertHolder holder;
        holder.rank = field<int>(path, h, "rank", at);
        const auto role = field<std::string>(path, h, "role", at);
        MOE_CHECK(role == "replica" || role == "slice", "{}: {}: role '{}' (valid: replica, slice)", path, at, role);
        holder.role = role == "slice" ? HolderRole::slice : HolderRole::replica;
        const json& ffn = field<json>(path, h, "ffn", at);
        const auto column = [&](std::size_t i) { return ffn.is_array() ? exact_integer<int64_t>(ffn[i]) : std::nullopt; };
        MOE_CHECK(ffn.is_array() && ffn.size() == 2 && column(0) && column(1),
                  "{}: {}: 'ffn' must be [begin, end] (integers), got {}", path, at, ffn.dump());
        holder.ffn_begin = *column(0);
        holder.ffn_end = *column(1);
        list.push_back(holder);
      }
    }
  }
  return ExpertPlacement(config, world, std::move(holders), path);
}

void write_placement_file(const std::string& path, const ExpertPlacement& placement, const ModelConfig& config,
                          const PlacementProvenance& provenance) {
  json layers = json::array();
  for (int64_t i = 0; i < placement.num_layers(); ++i) {
    const LayerPlacement& p = placement.layer(i);
    if (p.num_experts == 0) continue;
    json experts = json::array();
    for (int64_t x = 0; x < p.num_experts; ++x) {
      json holders = json::array();
      for (const ExpertHolder& h : p.holders[static_cast<std::size_t>(x)])
        holders.push_back({{"rank", h.rank}, {"role", role_name(h.role)}, {"ffn", {h.ffn_begin, h.ffn_end}}});
      experts.push_back({{"expert", x}, {"holders", holders}});
    }
    layers.push_back({{"layer", i}, {"experts", experts}});
  }
  const json doc = {{"format", kPlacementFormat},
                    {"version", kPlacementVersion},
                    {"world", placement.world()},
                    {"ranks_per_node", provenance.ranks_per_node},
                    {"policy", provenance.policy},
                    {"seed", provenance.seed},
                    {"replicas", provenance.replicas},
                    {"traces", provenance.traces},
                    {"trace_batches", provenance.trace_batches},
                    {"model", model_shape(config)},
                    {"layers", layers}};
  std::ofstream out(path, std::ios::trunc);
  MOE_CHECK(out.good(), "{}: cannot write the placement file", path);
  out << doc.dump(1) << "\n";
  out.close();
  MOE_CHECK(out.good(), "{}: writing the placement file failed", path);
}

}  // namespace moe
