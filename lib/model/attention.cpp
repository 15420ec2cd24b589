#include "model/attention.hpp"

namespace moe {

void apply_norm(Step& step, const Norm& norm, const float* x, float* out, int64_t m) {
  const auto eps = static_cast<float>(step.config.norm_eps);
  const int64_t d = step.config.hidden_size;
  if (step.config.norm == NormKind::rmsnorm)
    step.backend.rms_norm(x, norm.weight.as<float>(), out, m, d, eps);
  else
    step.backend.layer_norm(x, norm.weight.as<float>(), norm.bias.as<float>(), out, m, d, eps);
}

namespace {

// RMSNorm of rows [T, d] that are this tp rank's slice of rows of `count` elements in all.
void sharded_rms_norm(Step& step, float* x, const float* w, int64_t d, double count) {
  const int64_t t = step.num_tokens;
  auto* sum_sq = step.ws.get<double>(slot::qk_sum_sq, static_cast<std::size_t>(t));
  step.backend.row_sum_squares(x, t, d, sum_sq);
  step.backend.synchronize();
  step.tp.comm->allreduce_sum(sum_sq, static_cast<std::size_t>(t));
  step.backend.rms_norm_scaled(x, w, sum_sq, count, x, t, d, static_cast<float>(step.config.norm_eps));
}

}  // namespace

void attention_forward(Step& step, const LayerWeights& layer, float* h) {
  const ModelConfig& c = step.config;
  Backend& be = step.backend;
  const int64_t t = step.num_tokens;
  const int64_t q_cols = step.heads * c.head_dim;
  const int64_t kv_cols = step.kv_heads * c.head_dim;
  const float* x = step.ws.get<float>(slot::normed, static_cast<std::size_t>(t * c.hidden_size));
  float* q = step.ws.get<float>(slot::q, static_cast<std::size_t>(t * q_cols));
  float* k = step.ws.get<float>(slot::k, static_cast<std::size_t>(t * kv_cols));
  float* v = step.ws.get<float>(slot::v, static_cast<std::size_t>(t * kv_cols));
  {
    ScopedPhase phase(step.times, "attention.qkv");
    // q, k and v are row blocks of the fused matrix: three GEMMs into separate buffers keep the
    // rope and attention kernels on dense [T, heads * hd] layouts.
    const WeightView& w = layer.qkv.view;
    const auto row_bytes = w.stride * static_cast<int64_t>(dtype_size(w.dtype));
    WeightView wq = w, wk = w, wv = w;
    wq.rows = q_cols;
    wk.rows = kv_cols;
    wk.data = static_cast<const char*>(w.data) + q_cols * row_bytes;
    wv.rows = kv_cols;
    wv.data = static_cast<const char*>(w.data) + (q_cols + kv_cols) * row_bytes;
    be.linear(x, t, wq, q, 0.0f);
    be.linear(x, t, wk, k, 0.0f);
    be.linear(x, t, wv, v, 0.0f);
    if (c.qkv_bias) {
      const float* bias = layer.qkv_bias.as<float>();
      be.add_bias(q, bias, t, q_cols);
      be.add_bias(k, bias + q_cols, t, kv_cols);
      be.add_bias(v, bias + q_cols + kv_cols, t, kv_cols);
    }
    if (c.qk_norm) {  // OLMoE: over the whole projected row, before the head split and RoPE
      const auto eps = static_cast<float>(c.norm_eps);
      if (!step.tp.active()) {
        be.rms_norm(q, layer.q_norm.as<float>(), q, t, q_cols, eps);
        be.rms_norm(k, layer.k_norm.as<float>(), k, t, kv_cols, eps);
      } else {
        // The row is split over the tp ranks: its sum of squares is summed over them. A kv head
        // held by several ranks (tp > KV) is counted that many times, and so is its length.
        const double kv_copies =
            static_cast<double>(step.tp.size * step.kv_heads) / static_cast<double>(c.num_kv_heads);
        sharded_rms_norm(step, q, layer.q_norm.as<float>(), q_cols, static_cast<double>(c.num_heads * c.head_dim));
        sharded_rms_norm(step, k, layer.k_norm.as<float>(), kv_cols,
                         kv_copies * static_cast<double>(c.num_kv_heads * c.head_dim));
      }
    }
    if (c.position == PositionKind::rope) {
      const auto theta = static_cast<float>(c.rope_theta);
      be.rope(q, step.positions, t, step.heads, c.head_dim, theta);
      be.rope(k, step.positions, t, step.kv_heads, c.head_dim, theta);
    }
  }
  float* out = step.ws.get<float>(slot::attn_out, static_cast<std::size_t>(t * q_cols));
  {
    ScopedPhase phase(step.times, "attention.core");
    void* scratch = step.ws.get<std::byte>(slot::attn_scratch, be.attention_scratch_bytes(step.max_len));
    be.causal_attention(q, k, v, out, step.seq_offsets, step.num_seqs, step.max_len, step.heads, step.kv_heads,
                        c.head_dim, scratch);
  }
  if (!step.tp.active()) {
    ScopedPhase phase(step.times, "attention.out");
    be.linear(out, t, layer.o_proj.view, h, 1.0f);
    return;
  }
  float* partial = step.ws.get<float>(slot::partial, static_cast<std::size_t>(t * c.hidden_size));
  {
    ScopedPhase phase(step.times, "attention.out");
    be.linear(out, t, layer.o_proj.view, partial, 0.0f);
  }
  add_tp_partial(step, partial, h);
}

}  // namespace moe
