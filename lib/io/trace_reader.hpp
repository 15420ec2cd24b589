#pragma once
// Reads the routing trace of a results file (docs/formats.md, io/trace_writer.hpp): the input for
// the expert cache's belady policy, `moe-bench cache` and the placement planners.
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct TraceLayer {
  int64_t layer = 0;  // index in the model's layers
  int64_t num_experts = 0;
  std::vector<std::vector<int64_t>> batches;  // [finished batches][E] routed rows per expert
  // Each finished batch's active experts (rows > 0), ascending: the requests an expert cache of
  // this layer sees on one rank that holds every expert.
  std::vector<std::vector<int32_t>> active_steps() const;
};

struct RoutingTrace {
  std::string path;
  std::string model_checksum;
  std::string input_checksum;
  int64_t batch_size = 0;
  int64_t num_batches = 0;                       // in the input
  std::vector<int64_t> batch_ids;                // the finished global batches, ascending (rows of `layers`)
  std::vector<TraceLayer> layers;                // MoE layers, ascending
  const TraceLayer& layer(int64_t index) const;  // throws naming the file when absent
};

// Reads the trace of a results file written with `moe.trace: true` (serially, MPI_COMM_SELF).
// Errors name the file: not a results file, no trace, no finished batch.
RoutingTrace read_routing_trace(const std::string& path);

}  // namespace moe
