#include "model/step.hpp"

#include "model/mlp.hpp"
#include "model/weights.hpp"

namespace moe {

void add_tp_partial(Step& step, float* partial, float* h) {
  const int64_t n = step.num_tokens * step.config.hidden_size;
  ScopedPhase phase(step.times, "tp.allreduce");
  step.backend.synchronize();
  step.tp.comm->allreduce_sum(partial, static_cast<std::size_t>(n));
  step.backend.add(h, partial, n);
}

void mlp_forward_into(Step& step, const MlpWeights& mlp, const float* x, float* h, const char* phase) {
  if (!step.tp.active()) {
    ScopedPhase timed(step.times, phase);
    mlp_forward(step, mlp, x, step.num_tokens, h, 1.0f);
    return;
  }
  float* partial =
      step.ws.get<float>(slot::partial, static_cast<std::size_t>(step.num_tokens * step.config.hidden_size));
  {
    ScopedPhase timed(step.times, phase);
    mlp_forward(step, mlp, x, step.num_tokens, partial, 0.0f);
  }
  add_tp_partial(step, partial, h);
}

}  // namespace moe
