#include "io/trace_reader.hpp"

#include <mpi.h>

#include <algorithm>
#include <variant>

#include "core/error.hpp"
#include "io/h5.hpp"
#include "io/trace_writer.hpp"

namespace moe {

std::vector<std::vector<int32_t>> TraceLayer::active_steps() const {
  std::vector<std::vector<int32_t>> steps;
  steps.reserve(batches.size());
  for (const auto& counts : batches) {
    std::vector<int32_t> active;
    for (std::size_t e = 0; e < counts.size(); ++e)
      if (counts[e] > 0) active.push_back(static_cast<int32_t>(e));
    steps.push_back(std::move(active));
  }
  return steps;
}

const TraceLayer& RoutingTrace::layer(int64_t index) const {
  for (const TraceLayer& l : layers)
    if (l.layer == index) return l;
  fail("{}: the routing trace has no MoE layer {}", path, index);
}

RoutingTrace read_routing_trace(const std::string& path) {
  const h5::File file = h5::File::open_read(path, MPI_COMM_SELF);
  const AttrMap attrs = file.read_attributes();
  const auto text = [&](const char* name) {
    const auto it = attrs.find(name);
    return it != attrs.end() && std::holds_alternative<std::string>(it->second) ? std::get<std::string>(it->second)
                                                                                : std::string();
  };
  RoutingTrace trace;
  trace.path = path;
  trace.model_checksum = text("model_checksum");
  trace.input_checksum = text("input_checksum");
  MOE_CHECK(file.has("batch_done") && !trace.model_checksum.empty() && !trace.input_checksum.empty(),
            "{}: not a moe-score results file (no 'batch_done', model_checksum or input_checksum)", path);
  const auto it = attrs.find("trace_batch_size");
  MOE_CHECK(it != attrs.end() && std::holds_alternative<int64_t>(it->second),
            "{}: has no routing trace (run moe-score with moe.trace: true)", path);
  trace.batch_size = std::get<int64_t>(it->second);
  const std::vector<int32_t> done = file.read_all<int32_t>("batch_done");
  trace.num_batches = static_cast<int64_t>(done.size());
  for (int64_t b = 0; b < trace.num_batches; ++b)
    if (done[static_cast<std::size_t>(b)] != 0) trace.batch_ids.push_back(b);
  MOE_CHECK(!trace.batch_ids.empty(), "{}: the routing trace has no finished batch", path);
  for (const std::string& name : file.dataset_names()) {
    const std::string prefix = "trace/layer_";
    const std::string suffix = "/expert_rows";
    if (name.rfind(prefix, 0) != 0 || name.size() <= prefix.size() + suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string index = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    MOE_CHECK(index.size() <= 9 && index.find_first_not_of("0123456789") == std::string::npos,
              "{}: unexpected trace dataset '{}'", path, name);
    TraceLayer l;
    l.layer = std::stoll(index);
    MOE_CHECK(name == trace_counts_dataset(l.layer), "{}: unexpected trace dataset '{}'", path, name);
    const h5::DatasetInfo info = file.info(name);
    const auto& shape = info.shape;
    MOE_CHECK(shape.size() == 2 && info.kind == h5::ElementKind::i64 && shape[0] == trace.num_batches && shape[1] > 0,
              "{}: trace dataset '{}' must be int64 [{}, experts], is {} of rank {}", path, name, trace.num_batches,
              info.type_name, shape.size());
    l.num_experts = shape[1];
    const std::vector<int64_t> all = file.read_all<int64_t>(name);
    for (int64_t b : trace.batch_ids) {
      const auto row = all.begin() + static_cast<std::ptrdiff_t>(b * l.num_experts);
      l.batches.emplace_back(row, row + static_cast<std::ptrdiff_t>(l.num_experts));
      for (auto c = row; c != row + static_cast<std::ptrdiff_t>(l.num_experts); ++c)
        MOE_CHECK(*c >= 0, "{}: trace dataset '{}' has a negative count in batch {}", path, name, b);
    }
    trace.layers.push_back(std::move(l));
  }
  MOE_CHECK(!trace.layers.empty(), "{}: has no routing trace datasets (trace/layer_<L>/expert_rows)", path);
  std::sort(trace.layers.begin(), trace.layers.end(),
            [](const TraceLayer& a, const TraceLayer& b) { return a.layer < b.layer; });
  return trace;
}

}  // namespace moe
