#include "model/mlp.hpp"

namespace moe {

void mlp_activation(Backend& backend, ActivationKind kind, float* in, float* act, int64_t m, int64_t ffn) {
  if (kind == ActivationKind::swiglu) {
    backend.swiglu(in, in + ffn, 2 * ffn, act, m, ffn);
  } else {
    backend.gelu(in, m * ffn);
    if (act != in) backend.copy(act, in, sizeof(float) * static_cast<std::size_t>(m * ffn));
  }
}

void mlp_forward(Step& step, const MlpWeights& mlp, const float* x, int64_t m, float* out, float beta) {
  const int64_t in_rows = mlp.in.view.rows;
  float* hidden = step.ws.get<float>(slot::mlp_in, static_cast<std::size_t>(m * in_rows));
  step.backend.linear(x, m, mlp.in.view, hidden, 0.0f);
  float* act = step.config.activation == ActivationKind::swiglu
                   ? step.ws.get<float>(slot::mlp_act, static_cast<std::size_t>(m * mlp.ffn))
                   : hidden;
  mlp_activation(step.backend, step.config.activation, hidden, act, m, mlp.ffn);
  step.backend.linear(act, m, mlp.out.view, out, beta);
}

}  // namespace moe
