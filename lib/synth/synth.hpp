#pragma once
// Synthetic models and token datasets with fixed seeds: the built-in example, the tests'
// inputs and the benchmarks' workloads.
#include <cstdint>
#include <string>

#include "config/model_config.hpp"
#include "core/dtype.hpp"
#include "synth/routing_workload.hpp"

namespace moe {

// Writes a checkpoint of `config` with random weights (seeded; deterministic for a given seed).
// Matrices are N(0, 1/cols), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2); the router is
// scaled by `router_scale` (larger values route more decisively).
// `routing` gives the routing controlled statistics (synth/routing_workload.hpp); the default
// leaves the weights as drawn.
void write_random_model(const ModelConfig& config, const std::string& path, uint64_t seed, DType dtype,
                        double router_scale = 1.0, const RoutingSpec& routing = {});

struct TokenSpec {
  int64_t vocab_size = 0;
  int64_t num_seqs = 0;
  int64_t min_length = 1;
  int64_t max_length = 0;
  bool ragged = false;
  uint64_t seed = 1;
  int64_t topics = 0;         // > 0: topic workload (synth/routing_workload.hpp)
  int64_t topic_run = 1;      // consecutive sequences on one topic
  double topic_purity = 1.0;  // share of a sequence's tokens drawn from its topic's ids
};

// Writes a token dataset (padded tokens + lengths, or ragged tokens + offsets). Padding past each
// length is filled with -1 so that a reader which ignores lengths fails loudly.
void write_random_tokens(const TokenSpec& spec, const std::string& path);

}  // namespace moe
