#pragma once
// The FLOPs of one scored token (a multiply-add counts 2), per phase of the run report, for
// `moe-bench model`: the model's work against the machine's GEMM rate. Only the GEMM-shaped work
// is counted (projections, attention's two products over the causal half, experts, router, LM
// head); norms, activations and token movement are memory-bound and count 0.
#include <map>
#include <string>

#include "config/model_config.hpp"

namespace moe {

// mean_keys: the mean number of keys a query sees (for sequences of length S: (S + 1) / 2).
std::map<std::string, double> flops_per_token(const ModelConfig& c, double mean_keys);

}  // namespace moe
