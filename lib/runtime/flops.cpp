#include "runtime/flops.hpp"

namespace moe {

std::map<std::string, double> flops_per_token(const ModelConfig& c, double mean_keys) {
  const double d = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_kv_heads * c.head_dim);
  const auto mlp = [&](int64_t ffn) {  // in (gate and up, or up) and out projections
    return 2.0 * d * static_cast<double>(c.mlp_in_rows(ffn) + ffn);
  };
  std::map<std::string, double> f;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    f["attention.qkv"] += 2.0 * d * (q + 2.0 * kv);
    f["attention.core"] += 4.0 * q * mean_keys;  // q.k and p.v
    f["attention.out"] += 2.0 * q * d;
    if (!c.is_moe_layer(i)) {
      f["dense_mlp"] += mlp(c.dense_ffn);
      continue;
    }
    f["moe.router"] += 2.0 * d * static_cast<double>(c.num_experts(i));
    f["moe.experts"] += static_cast<double>(c.top_k) * mlp(c.expert_ffn);
    if (c.shared_ffn > 0) f["moe.shared"] += mlp(c.shared_ffn);
  }
  f["lm_head"] = 2.0 * d * static_cast<double>(c.vocab_size);
  return f;
}

}  // namespace moe
