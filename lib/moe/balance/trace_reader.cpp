#include "moe/balance/trace_reader.hpp"

#include "core/error.hpp"
#include "io/trace_reader.hpp"
#include "io/trace_writer.hpp"

namespace moe::balance {

TraceCounts read_trace_counts(const std::string& path) {
  const RoutingTrace trace = read_routing_trace(path);
  TraceCounts out;
  out.model_checksum = trace.model_checksum;
  for (const TraceLayer& layer : trace.layers) {
    CountMatrix m{static_cast<int64_t>(layer.batches.size()), layer.num_experts, {}};
    m.counts.reserve(static_cast<std::size_t>(m.batches * m.experts));
    for (const std::vector<int64_t>& row : layer.batches) m.counts.insert(m.counts.end(), row.begin(), row.end());
    validate(m, path + ": " + trace_counts_dataset(layer.layer));
    out.layers.emplace(layer.layer, std::move(m));
  }
  return out;
}

TraceCounts read_trace_counts(const std::vector<std::string>& paths, const ModelConfig& model,
                              const std::string& model_checksum) {
  MOE_CHECK(!paths.empty(), "placement: no trace file given");
  TraceCounts all;
  all.model_checksum = model_checksum;
  for (const std::string& path : paths) {
    const TraceCounts t = read_trace_counts(path);
    MOE_CHECK(t.model_checksum == model_checksum, "{}: trace of model {}, not of this model {}", path, t.model_checksum,
              model_checksum);
    for (const auto& [l, m] : t.layers)
      MOE_CHECK(l >= 0 && l < model.num_layers && model.is_moe_layer(l),
                "{}: trace has layer {}, which is not an MoE layer of this model", path, l);
    for (int64_t l = 0; l < model.num_layers; ++l) {
      if (!model.is_moe_layer(l)) continue;
      const auto it = t.layers.find(l);
      MOE_CHECK(it != t.layers.end(), "{}: trace lacks MoE layer {} (trace/layer_{}/expert_rows)", path, l, l);
      MOE_CHECK(it->second.experts == model.num_experts(l), "{}: trace of layer {} has {} experts, the model {}", path,
                l, it->second.experts, model.num_experts(l));
      CountMatrix& into = all.layers[l];
      into.experts = it->second.experts;
      into.batches += it->second.batches;
      into.counts.insert(into.counts.end(), it->second.counts.begin(), it->second.counts.end());
    }
  }
  return all;
}

}  // namespace moe::balance
