#include "bench_place.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.hpp"
#include "io/output_file.hpp"
#include "moe/balance/evaluate.hpp"

namespace moe {

void bench_place(const PlaceBenchOptions& o, const std::string& command) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) return;
  // The loads file goes to LOADS.partial and is renamed when complete; a file there that is not an
  // earlier loads file of ours is refused before any work (io/output_file.hpp).
  std::optional<StagedOutput> loads_out;
  if (!o.loads_json.empty()) {
    loads_out.emplace("--loads", o.loads_json, OutputKind::place_loads, NamedPaths{},
                      StagedOutput::Options{o.force, false});
    if (!loads_out->note().empty()) fmt::print("# --loads: {}\n", loads_out->note());
  }
  const balance::CountMatrix counts = balance::synthetic_counts(o.counts);
  std::vector<balance::EvaluationRow> rows;
  nlohmann::json loads = {{"format", kPlaceLoadsFormat},
                          {"command", command},
                          {"world", o.plan.world},
                          {"policies", nlohmann::json::array()}};
  for (const std::string& policy : balance::planner_names()) {
    const balance::PlannedLayer planned = balance::plan_and_evaluate(0, policy, counts, o.plan);
    rows.push_back(planned.row);
    loads["policies"].push_back({{"policy", policy},
                                 {"slots", planned.row.slots},
                                 {"max_load", planned.row.eval.max_load},
                                 {"avg_max_load", planned.row.eval.avg_max_load},
                                 {"max_over_mean", planned.row.eval.imbalance},
                                 {"rank_rows", planned.row.eval.rank_rows}});
  }
  fmt::print(
      "# {}\n# synthetic routing: {} experts, Zipf({}), {} rows per batch, {} batches, {} correlated pairs; "
      "replicate: {} extra slot(s) per rank, ranks per node {}\n",
      command, o.counts.experts, o.counts.zipf, o.counts.rows_per_batch, o.counts.batches, o.counts.correlated_pairs,
      o.plan.replicas, o.plan.ranks_per_node > 0 ? o.plan.ranks_per_node : o.plan.world);
  const int64_t build = counts.batches / 2;
  fmt::print("{}", balance::format_evaluation_table(rows, o.plan.world, build, counts.batches - build));
  std::string perf = "PERFORMANCE place";
  for (const auto& r : rows) perf += fmt::format(" {}_avg_max_load={:.4f}", r.policy, r.eval.avg_max_load);
  fmt::print("{}\n", perf);
  if (loads_out) write_text_output(*loads_out, loads.dump(1) + "\n");
}

}  // namespace moe
