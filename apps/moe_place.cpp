// moe-place: writes a placement file (docs/formats.md) for a model and a world size, which
// moe-score reads with `moe.placement: FILE`. The load-balancing policies plan every MoE layer
// from recorded routing traces (lib/moe/balance/), print the paper's evaluation (built on the
// first half of the batches, tested on the second) and write the placement built on all batches.
// See `moe-place --help`.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/model_identity.hpp"
#include "io/output_file.hpp"
#include "main_support.hpp"
#include "moe/balance/plan_trace.hpp"
#include "moe/placement_file.hpp"
#include "moe/placement_random.hpp"

namespace {

using namespace moe;

bool planned_policy(const std::string& policy) {
  return policy == "greedy" || policy == "anticorrelation" || policy == "replicate";
}

// The evaluation table: the policy's placement per layer, and beside it today's contiguous layout
// as the baseline. Contiguous slices experts where a layer has fewer experts than ranks, which
// the evaluation does not model, so such layers get no baseline row.
void print_evaluation(const std::string& policy, const balance::TraceCounts& trace,
                      const balance::PlanOptions& options) {
  balance::TraceCounts whole = trace;
  std::erase_if(whole.layers, [&](const auto& layer) { return layer.second.experts < options.world; });
  std::vector<balance::PlannedLayer> rows;
  if (policy != "contiguous" || !whole.layers.empty()) rows = balance::plan_trace("contiguous", whole, options);
  if (policy != "contiguous") {
    const std::vector<balance::PlannedLayer> planned = balance::plan_trace(policy, trace, options);
    for (const balance::PlannedLayer& p : planned) {
      const auto after =
          std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.row.layer > p.row.layer; });
      rows.insert(after, p);
    }
  }
  std::vector<balance::EvaluationRow> table;
  for (const balance::PlannedLayer& p : rows) table.push_back(p.row);
  const int64_t batches = trace.layers.begin()->second.batches;
  fmt::print("{}", balance::format_evaluation_table(table, options.world, batches / 2, batches - batches / 2));
  for (const auto& [layer, counts] : trace.layers)
    if (counts.experts < options.world)
      fmt::print("# layer {}: {} experts on {} ranks; contiguous slices them (not evaluated)\n", layer, counts.experts,
                 options.world);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-place: write an expert placement file (which ranks hold which experts) for moe-score.",
               "moe-place"};
  app.set_version_flag("--version", std::string("moe-place ") + MOE_VERSION);
  std::string model_path, policy, out;
  std::vector<std::string> traces;
  int world = 0, ranks_per_node = 0, replicas = 0;
  uint64_t seed = 1;
  app.add_option("--model", model_path, "checkpoint (HDF5) whose shape the placement is for")->required();
  app.add_option("--trace", traces,
                 "results file of a moe-score run with moe.trace: true, of this model (repeatable: batches are "
                 "concatenated in the order given); required by greedy, anticorrelation and replicate");
  app.add_option("--world", world, "ranks of the runs that will use it")->required()->check(CLI::PositiveNumber);
  app.add_option("--ranks-per-node", ranks_per_node,
                 "ranks per node (must divide --world); replicate keeps an expert's replicas inside one node");
  app.add_option("--policy", policy,
                 "contiguous: today's default (ranges, slicing when experts < ranks); random: random experts per "
                 "rank, uneven counts, a rank with none, replicas on 2-3 ranks, uneven slices (tests); greedy: "
                 "experts by mean load, each to the least-loaded rank with room, equal experts per rank; "
                 "anticorrelation: as greedy, an expert costs more on a rank holding experts that fire with it; "
                 "replicate: --replicas extra slots per rank for replicas of the hottest experts, then packed. "
                 "With --trace, the table shows each MoE layer's placement built on the first half of the batches "
                 "and tested on the second (the paper's protocol); the file holds the placement built on all "
                 "batches")
      ->required()
      ->check(CLI::IsMember({"contiguous", "random", "greedy", "anticorrelation", "replicate"}));
  CLI::Option* replicas_option =
      app.add_option("--replicas", replicas, "replicate: extra expert slots per rank")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", seed, "random seed (policy random)")->capture_default_str();
  app.add_option("--out", out, "placement file to write (JSON; written as OUT.partial, renamed when complete)")
      ->required();
  bool force = false;
  app.add_flag("--force", force, "replace --out even when it is not a placement file");
  if (const auto code = moe::parse_command_line(app, "moe-place", argc, argv)) return *code;

  return moe::run_main("moe-place", argc, argv, [&] {
    MOE_CHECK(ranks_per_node >= 0 && (ranks_per_node == 0 || world % ranks_per_node == 0),
              "--ranks-per-node {} does not divide --world {}", ranks_per_node, world);
    MOE_CHECK(!planned_policy(policy) || !traces.empty(),
              "--policy {} plans from routing history: give --trace RESULTS.h5 (moe-score with moe.trace: true)",
              policy);
    MOE_CHECK(policy != "random" || traces.empty(), "--policy random does not read --trace");
    MOE_CHECK(replicas_option->count() == 0 || policy == "replicate", "--replicas is for --policy replicate");
    NamedPaths inputs = {{"--model", model_path}};
    for (const std::string& trace : traces) inputs.emplace_back("--trace", trace);
    // Refuses an input as output before any work; the file appears only when complete.
    StagedOutput output("--out", out, OutputKind::placement, inputs, {force, false});
    CheckpointReader ckpt(model_path, MPI_COMM_SELF);
    const ModelConfig& config = ckpt.config();
    const balance::PlanOptions options{world, ranks_per_node, replicas};
    PlacementProvenance provenance{policy, policy == "random" ? seed : 0, ranks_per_node, replicas, traces, 0};
    const ExpertPlacement placement = [&] {
      if (policy == "random") return random_placement(config, world, seed);
      if (traces.empty()) return ExpertPlacement(config, world);
      const balance::TraceCounts trace = balance::read_trace_counts(traces, config, whole_model_checksum(ckpt));
      provenance.trace_batches = trace.layers.begin()->second.batches;
      print_evaluation(policy, trace, options);
      if (policy == "contiguous") return ExpertPlacement(config, world);
      return ExpertPlacement(config, world, balance::plan_all_batches(policy, trace, options, config.num_layers));
    }();
    write_placement_file(output.partial(), placement, config, provenance);
    output.commit();
    fmt::print("moe-place: wrote {} ({} placement for {} ranks{})\n", out, policy, world,
               provenance.trace_batches > 0 ? fmt::format(", built on all {} traced batches", provenance.trace_batches)
                                            : std::string());
    return 0;
  });
}
