#pragma once
#include "model/step.hpp"
#include "model/weights.hpp"

namespace moe {

// out[m, d] = beta * out + MLP(x[m, d]) with the model's activation (swiglu or gelu).
// r: x, weights  w: out, workspace slots mlp_in, mlp_act
void mlp_forward(Step& step, const MlpWeights& mlp, const float* x, int64_t m, float* out, float beta);

// The activation between an MLP's two GEMMs: in [m, mlp_in_rows(ffn)] -> act [m, ffn].
// For gelu `act` may alias `in`.
void mlp_activation(Backend& backend, ActivationKind kind, float* in, float* act, int64_t m, int64_t ffn);

}  // namespace moe
