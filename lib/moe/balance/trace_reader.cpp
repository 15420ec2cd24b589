#include "moe/balance/trace_reader.hpp"

#include <mpi.h>

#include <variant>

#include "core/error.hpp"
#include "io/h5.hpp"

namespace moe::balance {

TraceCounts read_trace_counts(const std::string& path) {
  const h5::File file = h5::File::open_read(path, MPI_COMM_SELF);
  const AttrMap root = file.read_attributes("/");
  const auto sum = root.find("model_checksum");
  MOE_CHECK(sum != root.end() && std::holds_alternative<std::string>(sum->second) && file.has("batch_done"),
            "{}: not a moe-score results file (no model_checksum or batch_done)", path);
  MOE_CHECK(root.count("trace_batch_size") == 1, "{}: has no routing trace (run moe-score with moe.trace: true)", path);
  TraceCounts trace;
  trace.model_checksum = std::get<std::string>(sum->second);
  const std::vector<int32_t> done = file.read_all<int32_t>("batch_done");
  std::vector<int64_t> finished;
  for (std::size_t b = 0; b < done.size(); ++b)
    if (done[b] != 0) finished.push_back(static_cast<int64_t>(b));
  MOE_CHECK(!finished.empty(), "{}: the routing trace has no finished batch", path);
  const std::string prefix = "trace/layer_", suffix = "/expert_rows";
  for (const std::string& name : file.dataset_names()) {
    if (name.rfind(prefix, 0) != 0 || name.size() <= prefix.size() + suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string index = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    MOE_CHECK(index.find_first_not_of("0123456789") == std::string::npos, "{}: unexpected trace dataset '{}'", path,
              name);
    const h5::DatasetInfo info = file.info(name);
    MOE_CHECK(info.shape.size() == 2 && info.kind == h5::ElementKind::i64 &&
                  info.shape[0] == static_cast<int64_t>(done.size()) && info.shape[1] > 0,
              "{}: trace dataset '{}' must be int64 [{}, experts], is {} of rank {}", path, name, done.size(),
              info.type_name, info.shape.size());
    const std::vector<int64_t> all = file.read_all<int64_t>(name);
    CountMatrix m{static_cast<int64_t>(finished.size()), info.shape[1], {}};
    for (int64_t b : finished)
      m.counts.insert(m.counts.end(), all.begin() + b * m.experts, all.begin() + (b + 1) * m.experts);
    validate(m, path + ": trace dataset '" + name + "'");
    trace.layers.emplace(std::stoll(index), std::move(m));
  }
  MOE_CHECK(!trace.layers.empty(), "{}: has no routing trace datasets (trace/layer_<L>/expert_rows)", path);
  return trace;
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
