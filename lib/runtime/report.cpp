#include "runtime/report.hpp"

#include <omp.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/gemm.hpp"
#include "core/error.hpp"
#include "runtime/memory.hpp"

namespace moe {

namespace {

// Gathers instead of a float max-reduce so that byte counts stay exact.
std::vector<double> gather(Communicator& world, double value) {
  std::vector<double> all(static_cast<std::size_t>(world.size()));
  world.allgather(&value, sizeof(double), all.data());
  return all;
}

double max_over_ranks(Communicator& world, double value) {
  const std::vector<double> all = gather(world, value);
  return *std::max_element(all.begin(), all.end());
}

// Every phase the code times, in pipeline order. Ranks reduce over this fixed list, not over the
// phases each happened to record: a rank that ran no batch still takes part in every reduction.
const char* const kPhases[] = {"validate",     "load",          "warmup",         "read",          "embed",
                               "norm",         "attention.qkv", "attention.core", "attention.out", "dense_mlp",
                               "moe.router",   "moe.dispatch",  "moe.experts",    "moe.combine",   "moe.shared",
                               "tp.allreduce", "tp.allgather",  "lm_head",        "write"};

}  // namespace

namespace {
nlohmann::json cache_layer_json(Communicator& world, const ExpertCacheLayerStats& c) {
  const std::vector<double> hits = gather(world, static_cast<double>(c.stats.hits));
  const std::vector<double> misses = gather(world, static_cast<double>(c.stats.misses));
  const std::vector<double> bytes = gather(world, static_cast<double>(c.stats.bytes_loaded));
  const std::vector<double> stall = gather(world, c.stats.stall_seconds);
  const std::vector<double> slots = gather(world, static_cast<double>(c.slots));
  const std::vector<double> resident = gather(world, static_cast<double>(c.resident_bytes));
  const double h = std::accumulate(hits.begin(), hits.end(), 0.0);
  const double m = std::accumulate(misses.begin(), misses.end(), 0.0);
  return {{"slots_per_rank", std::vector<int64_t>(slots.begin(), slots.end())},
          {"hits", static_cast<int64_t>(h)},
          {"misses", static_cast<int64_t>(m)},
          {"miss_rate", h + m > 0 ? m / (h + m) : 0.0},
          {"bytes_loaded", static_cast<int64_t>(std::accumulate(bytes.begin(), bytes.end(), 0.0))},
          {"stall_seconds_max_over_ranks", *std::max_element(stall.begin(), stall.end())},
          {"hits_per_rank", std::vector<int64_t>(hits.begin(), hits.end())},
          {"misses_per_rank", std::vector<int64_t>(misses.begin(), misses.end())},
          {"bytes_loaded_per_rank", std::vector<int64_t>(bytes.begin(), bytes.end())},
          {"stall_seconds_per_rank", stall},
          {"resident_expert_bytes_per_rank", std::vector<int64_t>(resident.begin(), resident.end())}};
}
}  // namespace

nlohmann::json make_report(const ReportInputs& in) {
  using nlohmann::json;
  Communicator& world = in.world;
  json r;
  r["moebatch_version"] = MOE_VERSION;
  r["model"] = {{"path", in.config.model},
                {"family", in.model.family},
                {"parameters", in.model.parameter_count()},
                {"layers", in.model.num_layers},
                {"hidden_size", in.model.hidden_size},
                {"vocab_size", in.model.vocab_size},
                {"layer_num_experts", in.model.layer_num_experts},
                {"top_k", in.model.top_k}};
  r["input"] = {{"path", in.config.input}, {"sequences", in.num_seqs}, {"tokens", in.num_tokens}};
  r["layout"] = {{"world", world.size()},
                 {"tp", in.config.parallel.tp},
                 {"dp", world.size() / in.config.parallel.tp},
                 {"nodes", in.topology ? in.topology->num_nodes : 1},
                 {"ranks_per_node", in.topology ? in.topology->ranks_per_node : 1},
                 {"simulated_nodes", in.topology ? in.topology->simulated_nodes : false},
                 {"backend", in.backend.name()},
                 {"threads_per_rank", omp_get_max_threads()},
                 {"gating", gating_name(in.config.moe.gating)},
                 {"capacity_factor", in.config.moe.capacity_factor},
                 {"alltoall", alltoall_name(in.config.moe.alltoall)},
                 {"dispatch_chunks", in.dispatch_chunks},
                 {"batch_size", in.config.batch_size}};

  if (in.backend.name() == "cpu")  // which GEMM kernels ran (backend/cpu/gemm.hpp)
    r["kernels"] = {{"cpu_flags", cpu::cpu_features().flags},
                    {"f32_gemm", cpu::gemm_kernels().f32},
                    {"bf16_gemm", cpu::gemm_kernels().bf16},
                    {"attention_blas", cpu::gemm_kernels().openblas}};

  const double loop = max_over_ranks(world, in.loop_seconds);
  r["throughput"] = {{"tokens_per_second", loop > 0 ? static_cast<double>(in.num_tokens) / loop : 0.0},
                     {"sequences_per_second", loop > 0 ? static_cast<double>(in.num_seqs) / loop : 0.0},
                     {"loop_seconds", loop},
                     {"total_seconds", max_over_ranks(world, in.total_seconds)},
                     {"steps", in.num_steps}};
  for (const auto& [name, seconds] : in.times.seconds())
    MOE_CHECK(std::find_if(std::begin(kPhases), std::end(kPhases), [&](const char* p) { return name == p; }) !=
                  std::end(kPhases),
              "run report: phase '{}' is not in the report's phase list", name);
  json phases = json::object();
  for (const char* name : kPhases) {
    const auto it = in.times.seconds().find(name);
    const double seconds = max_over_ranks(world, it == in.times.seconds().end() ? 0.0 : it->second);
    if (seconds > 0) phases[name] = seconds;
  }
  r["phase_seconds_max_over_ranks"] = phases;
  // The phase placement balances, per rank: the slowest rank's is what the step waits for.
  const auto experts = in.times.seconds().find("moe.experts");
  r["moe_experts_seconds_per_rank"] = gather(world, experts == in.times.seconds().end() ? 0.0 : experts->second);

  r["memory"] = {
      {"peak_rss_bytes_max_over_ranks", max_over_ranks(world, static_cast<double>(peak_rss_bytes()))},
      {"backend_peak_bytes_max_over_ranks", max_over_ranks(world, static_cast<double>(in.backend.peak_bytes()))},
      {"weight_bytes_max_over_ranks", max_over_ranks(world, static_cast<double>(in.transformer.weights().bytes))},
      {"expert_bytes_max_over_ranks", max_over_ranks(world, static_cast<double>(in.experts.resident_bytes()))},
      {"expert_bytes_per_rank", gather(world, static_cast<double>(in.experts.resident_bytes()))},
      // Of the weight and expert bytes, those used in place in the mapped checkpoint (mmap_weights).
      {"mapped_weight_bytes_max_over_ranks",
       max_over_ranks(world, static_cast<double>(in.transformer.weights().mapped_bytes + in.experts.mapped_bytes()))},
      {"workspace_bytes", in.transformer.workspace().bytes()},
      {"workspace_growths_in_batch_loop", in.workspace_growths_in_loop}};

  // The bounded expert cache (moe.expert_cache.slots other than all): per MoE layer, the same on
  // every rank (zeros where a rank holds none of the layer's experts).
  std::vector<ExpertCacheLayerStats> cache = in.experts.cache_stats();
  json layers = json::array();
  for (const MoeLayerStats& s : in.transformer.moe_stats()) {
    std::vector<double> counts(s.expert_tokens.begin(), s.expert_tokens.end());
    world.allreduce_sum(counts.data(), counts.size());
    double dropped = static_cast<double>(s.dropped);
    double padded = static_cast<double>(s.padded);
    world.allreduce_sum(&dropped, 1);
    world.allreduce_sum(&padded, 1);
    const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
    const double mean = counts.empty() ? 0.0 : total / static_cast<double>(counts.size());
    const double peak = counts.empty() ? 0.0 : *std::max_element(counts.begin(), counts.end());
    std::vector<int64_t> tokens_per_expert(counts.begin(), counts.end());
    // The load placement balances: rows each rank's experts computed (routed and padding).
    const std::vector<double> rows = gather(world, static_cast<double>(s.rows_computed));
    const double rows_mean = std::accumulate(rows.begin(), rows.end(), 0.0) / static_cast<double>(rows.size());
    const double rows_max = *std::max_element(rows.begin(), rows.end());
    const std::vector<double> messages = gather(world, static_cast<double>(s.alltoall_messages));
    const std::vector<double> bytes = gather(world, static_cast<double>(s.alltoall_bytes));
    layers.push_back({{"layer", s.layer},
                      {"experts", counts.size()},
                      {"tokens_per_expert", tokens_per_expert},
                      {"load_imbalance_max_over_mean", mean > 0 ? peak / mean : 0.0},
                      {"dropped_rows", static_cast<int64_t>(dropped)},
                      {"padded_rows", static_cast<int64_t>(padded)},
                      {"rows_computed_per_rank", std::vector<int64_t>(rows.begin(), rows.end())},
                      {"rows_computed_max_over_mean", rows_mean > 0 ? rows_max / rows_mean : 0.0},
                      {"alltoall_messages_per_rank", messages},
                      {"alltoall_bytes_per_rank", bytes}});
    const auto c = std::find_if(cache.begin(), cache.end(), [&](const auto& x) { return x.layer == s.layer; });
    if (c != cache.end()) layers.back()["expert_cache"] = cache_layer_json(world, *c);
  }
  r["moe_layers"] = layers;
  return r;
}

}  // namespace moe
