#pragma once
// The router (gate): logits = x . W_router^T, softmax over all experts, top-k with optional
// renormalisation. Its choices come back to the host, where the dispatch plan is made.
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"

namespace moe {

struct RouterChoice {
  std::vector<int32_t> ids;    // [T, k] host
  std::vector<float> weights;  // [T, k] host
};

// r: x [T, d], router [E, d]  w: logits [T, E], ids_dev/weights_dev [T, k], choice (host)
void route(Backend& backend, const float* x, int64_t num_tokens, const WeightView& router, int64_t k, bool renormalize,
           float* logits, int32_t* ids_dev, float* weights_dev, RouterChoice& choice);

}  // namespace moe
