#include "runtime/memory_estimate.hpp"

#include <algorithm>
#include <functional>

#include "backend/cpu/gemm.hpp"
#include "core/error.hpp"
#include "core/memory_budget.hpp"

namespace moe {

namespace {
// Tokens a rank's experts receive in a step, in units of its own tokens x top_k: dynamic gating
// is unbounded in principle; twice the even share covers the imbalance of trained routers.
constexpr double kDispatchImbalance = 2;
}  // namespace

MemoryEstimate estimate_memory(const ModelConfig& c, const ExpertPlacement& placement, int rank,
                               const std::vector<int64_t>& layer_slots, int64_t tp, int64_t max_tokens, int64_t max_len,
                               int threads, double weight_bytes) {
  const double d = static_cast<double>(c.hidden_size);
  const double q_cols = static_cast<double>(c.num_heads * c.head_dim);
  const double kv_cols = static_cast<double>(c.num_kv_heads * c.head_dim);
  double expert_params = 0;
  double local_expert_params = 0;
  double widest_mlp = static_cast<double>(c.mlp_in_rows(std::max(c.dense_ffn, c.shared_ffn)));
  double widest_router = 0;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    if (!c.is_moe_layer(i)) continue;
    const double per_expert = static_cast<double>(c.mlp_in_rows(c.expert_ffn) + c.expert_ffn) * d + d;
    expert_params += per_expert * static_cast<double>(c.num_experts(i));
    // This rank's experts (their FFN columns); a bounded cache holds at most `slots` of them, the
    // widest ones counted.
    std::vector<double> local;
    for (const LocalExpert& x : placement.local_experts(i, rank))
      local.push_back(static_cast<double>(c.mlp_in_rows(x.ffn()) + x.ffn()) * d + d);
    std::sort(local.begin(), local.end(), std::greater<>());
    const std::size_t slots =
        layer_slots.empty() ? local.size()
                            : std::min<std::size_t>(local.size(), static_cast<std::size_t>(std::max<int64_t>(
                                                                      0, layer_slots[static_cast<std::size_t>(i)])));
    for (std::size_t x = 0; x < slots; ++x) local_expert_params += local[x];
    widest_router = std::max(widest_router, static_cast<double>(c.num_experts(i)));
  }
  MemoryEstimate e;
  const double dense_params = static_cast<double>(c.parameter_count()) - expert_params;
  e.model_bytes = weight_bytes * (dense_params / static_cast<double>(tp) + local_expert_params);

  const double k = static_cast<double>(c.top_k);
  const double expert_rows = kDispatchImbalance * k;  // per token of this rank
  const double per_token_floats =
      6 * d + 3 * q_cols + 2 * kv_cols + d * static_cast<double>(tp) + widest_mlp + widest_router + 2 * k +
      expert_rows * (static_cast<double>(c.mlp_in_rows(c.expert_ffn) + c.expert_ffn) + 3 * d);
  const double tokens = static_cast<double>(max_tokens);
  // Attention works in tiles of 64 query rows against the whole sequence, per thread; the LM
  // head in tiles of the vocabulary (a few MiB).
  const double attention = 4.0 * 64 * static_cast<double>(max_len) * std::max(1, threads);
  const double lm_head = 4.0 * 256 * static_cast<double>(c.vocab_size) / static_cast<double>(tp);
  e.workspace_bytes = 4 * per_token_floats * tokens + attention + std::min(lm_head, 64.0 * (1 << 20)) +
                      24 * tokens;  // host staging: ids, positions, targets, scores
  return e;
}

double weight_bytes_held(DType dtype, const std::string& backend) {
  const double stored = static_cast<double>(dtype_size(dtype));
  return dtype == DType::bf16 && backend == "cpu" && cpu::bf16_gemm_packs_weights() ? 2 * stored : stored;
}

void require_memory_on_nodes(const MemoryEstimate& mine, MPI_Comm world) {
  MPI_Comm node = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  double need[2] = {mine.model_bytes, mine.workspace_bytes};
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, need, 2, MPI_DOUBLE, MPI_SUM, node));
  int ranks = 1;
  MOE_MPI_CHECK(MPI_Comm_size(node, &ranks));
  MOE_MPI_CHECK(MPI_Comm_free(&node));
  require_memory(fmt::format("the model shard{} ({}) and batch workspace ({}) of {} rank(s) on this node",
                             ranks > 1 ? "s" : "", format_bytes(need[0]), format_bytes(need[1]), ranks),
                 need[0] + need[1]);
}

}  // namespace moe
