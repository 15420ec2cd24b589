#pragma once
#include "model/step.hpp"
#include "model/weights.hpp"

namespace moe {

// h += o_proj(causal_attention(rope(q), rope(k), v)) where q, k, v come from norm(h) in
// step.ws[normed]. r: normed, layer weights  rw: h  w: slots q, k, v, attn_out, attn_scratch
void attention_forward(Step& step, const LayerWeights& layer, float* h);

// The layer's pre-norm (rmsnorm or layernorm): out = norm(x).
void apply_norm(Step& step, const Norm& norm, const float* x, float* out, int64_t m);

}  // namespace moe
