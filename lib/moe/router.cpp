#include "moe/router.hpp"

namespace moe {

void route(Backend& backend, const float* x, int64_t num_tokens, const WeightView& router, int64_t k, bool renormalize,
           float* logits, int32_t* ids_dev, float* weights_dev, RouterChoice& choice) {
  backend.linear(x, num_tokens, router, logits, 0.0f);
  backend.softmax_topk(logits, num_tokens, router.rows, k, renormalize, ids_dev, weights_dev);
  const auto n = static_cast<std::size_t>(num_tokens * k);
  choice.ids.resize(n);
  choice.weights.resize(n);
  backend.copy_to_host(choice.ids.data(), ids_dev, n * sizeof(int32_t));
  backend.copy_to_host(choice.weights.data(), weights_dev, n * sizeof(float));
}

}  // namespace moe
