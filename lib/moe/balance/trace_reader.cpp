#include "moe/balance/trace_reader.hpp"

#include <mpi.h>

#include <variant>

#include "core/error.hpp"
#include "io/h5.hpp"

namespace moe::balance {
namespace {

constexpr const char* kPrefix = "trace/layer_";

int64_t int_attribute(const AttrMap& attrs, const std::string& path, const std::string& dataset,
                      const std::string& name) {
  const auto it = attrs.find(name);
  MOE_CHECK(it != attrs.end() && std::holds_alternative<int64_t>(it->second),
            "{}: trace dataset '{}' lacks the integer attribute '{}'", path, dataset, name);
  return std::get<int64_t>(it->second);
}

}  // namespace

RoutingTrace read_routing_trace(const std::string& path) {
  const h5::File file = h5::File::open_read(path, MPI_COMM_SELF);
  RoutingTrace trace;
  const AttrMap root = file.read_attributes("/");
  const auto sum = root.find("model_checksum");
  MOE_CHECK(sum != root.end() && std::holds_alternative<std::string>(sum->second),
            "{}: no model_checksum attribute (not a moe-score results file)", path);
  trace.model_checksum = std::get<std::string>(sum->second);
  for (const std::string& name : file.dataset_names()) {
    if (name.rfind(kPrefix, 0) != 0) continue;
    const h5::DatasetInfo info = file.info(name);
    MOE_CHECK(info.shape.size() == 2 && info.kind == h5::ElementKind::i64,
              "{}: trace dataset '{}' must be int64 [batches, experts], is {} of rank {}", path, name, info.type_name,
              info.shape.size());
    MOE_CHECK(info.shape[0] > 0, "{}: trace dataset '{}' has no batches", path, name);
    const AttrMap attrs = file.read_attributes(name);
    const int64_t layer = int_attribute(attrs, path, name, "layer");
    const int64_t experts = int_attribute(attrs, path, name, "num_experts");
    MOE_CHECK(name == kPrefix + std::to_string(layer), "{}: trace dataset '{}' has layer attribute {}", path, name,
              layer);
    MOE_CHECK(info.shape[1] == experts, "{}: trace dataset '{}' has {} columns for num_experts {}", path, name,
              info.shape[1], experts);
    CountMatrix m{info.shape[0], info.shape[1], file.read_all<int64_t>(name)};
    validate(m, path + ": trace dataset '" + name + "'");
    trace.layers.emplace(layer, std::move(m));
  }
  MOE_CHECK(!trace.layers.empty(), "{}: no routing trace (/trace/layer_<L>); record one with moe-score", path);
  return trace;
}

RoutingTrace read_routing_traces(const std::vector<std::string>& paths, const ModelConfig& model,
                                 const std::string& model_checksum) {
  MOE_CHECK(!paths.empty(), "placement: no trace file given");
  RoutingTrace all;
  all.model_checksum = model_checksum;
  for (const std::string& path : paths) {
    const RoutingTrace t = read_routing_trace(path);
    MOE_CHECK(t.model_checksum == model_checksum, "{}: trace of model {}, not of this model {}", path, t.model_checksum,
              model_checksum);
    for (int64_t l = 0; l < model.num_layers; ++l) {
      const auto it = t.layers.find(l);
      if (!model.is_moe_layer(l)) {
        MOE_CHECK(it == t.layers.end(), "{}: trace has layer {}, which is dense in this model", path, l);
        continue;
      }
      MOE_CHECK(it != t.layers.end(), "{}: trace lacks MoE layer {} (/trace/layer_{})", path, l, l);
      MOE_CHECK(it->second.experts == model.num_experts(l), "{}: trace of layer {} has {} experts, the model {}", path,
                l, it->second.experts, model.num_experts(l));
      CountMatrix& into = all.layers[l];
      into.experts = it->second.experts;
      into.batches += it->second.batches;
      into.counts.insert(into.counts.end(), it->second.counts.begin(), it->second.counts.end());
    }
    for (const auto& [l, m] : t.layers)
      MOE_CHECK(l >= 0 && l < model.num_layers, "{}: trace has layer {}, the model {} layers", path, l,
                model.num_layers);
  }
  return all;
}

}  // namespace moe::balance
