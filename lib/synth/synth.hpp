#pragma once
// Synthetic models and token datasets with fixed seeds: the built-in example, the tests'
// inputs and the benchmarks' workloads.
#include <cstdint>
#include <string>

#include "config/model_config.hpp"
#include "core/dtype.hpp"

namespace moe {

// Writes a checkpoint of `config` with random weights (seeded; deterministic for a given seed).
// Matrices are N(0, 1/cols), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2); the router is
// scaled by `router_scale` (larger values route more decisively).
void write_random_model(const ModelConfig& config, const std::string& path, uint64_t seed, DType dtype,
                        double router_scale = 1.0);

struct TokenSpec {
  int64_t vocab_size = 0;
  int64_t num_seqs = 0;
  int64_t min_length = 1;
  int64_t max_length = 0;
  bool ragged = false;
  uint64_t seed = 1;
};

// Writes a token dataset (padded tokens + lengths, or ragged tokens + offsets). Padding past each
// length is filled with -1 so that a reader which ignores lengths fails loudly.
void write_random_tokens(const TokenSpec& spec, const std::string& path);

}  // namespace moe
