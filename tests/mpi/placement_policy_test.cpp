// Load-balanced placements give the contiguous placement's answer (issue 11): a fresh random
// model with Zipf(1)-skewed routing (moe-synth --zipf) scores a token set with `moe.trace: true`
// on one rank; moe-place plans greedy, anticorrelation and replicate (1 extra slot per rank, flat
// and on two simulated nodes) placements from that trace; moe-score runs each on 4 and 8 ranks on
// another token set of the same workload, and the logprobs equal the contiguous placement's run
// on the same world (max |d| <= 1e-5). Mixtral (16 experts per layer, top-2) and PR-MoE (layers of
// 4 and 8 experts, top-1: per-layer placements; greedy and anticorrelation need at least one
// whole expert per rank, so world 8 runs replicate only). The reports' rows per rank add up to
// the routed rows (each row of a replicated expert computed once).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "support/h5_read.hpp"
#include "support/process.hpp"
#include "support/report.hpp"

namespace moe::test {
namespace {

struct Family {
  std::string name;
  std::string model_args;  // moe-synth model options
  int min_experts;         // fewest experts of a MoE layer
};

struct Policy {
  std::string name;
  std::string args;  // moe-place options
  int nodes;         // simulated nodes of world / nodes ranks
};

class PlacementPolicy : public testing::TestWithParam<Family> {};

TEST_P(PlacementPolicy, EveryPolicyGivesTheContiguousAnswer) {
  const Family family = GetParam();
  ScratchDir dir("placement-policy-" + family.name);
  std::random_device rd;
  const unsigned model_seed = rd(), token_seed = rd();
  SCOPED_TRACE(fmt::format("model seed {}, token seeds {} and {}", model_seed, token_seed, token_seed + 1));
  const std::string model = dir.file("model.h5"), history = dir.file("history.h5"), tokens = dir.file("tokens.h5");
  auto r = run_command(fmt::format("{} model {} {} --zipf 1 --seed {} {}", program("moe-synth"),
                                   input_file("models/" + family.name + "-tiny.yaml"), model, model_seed,
                                   family.model_args));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [path, seed, seqs] : {std::tuple{history, token_seed, 48}, std::tuple{tokens, token_seed + 1, 16}}) {
    r = run_command(fmt::format("{} tokens {} --vocab 512 --num-seqs {} --min-len 8 --max-len 40 --ragged --seed {}",
                                program("moe-synth"), path, seqs, seed));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const std::string trace = dir.file("trace.h5");
  r = run_command(mpirun(1) + program("moe-score") + " " +
                  write_run_file(dir, model, history, trace, "batch_size: 4\nmoe:\n  trace: true\n"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::vector<Policy> policies = {{"contiguous", "", 1},
                                        {"greedy", "", 1},
                                        {"anticorrelation", "", 1},
                                        {"replicate", "--replicas 1", 1},
                                        {"replicate", "--replicas 1", 2}};
  for (const int world : {4, 8}) {
    Array contiguous;
    for (const Policy& p : policies) {
      if (p.name != "contiguous" && p.name != "replicate" && family.min_experts < world) continue;
      const int rpn = world / p.nodes;
      SCOPED_TRACE(fmt::format("world {}, {} {}, ranks per node {}", world, p.name, p.args, rpn));
      const std::string tag = fmt::format("{}_{}_{}", world, p.name, rpn);
      const std::string placement = dir.file("placement_" + tag + ".json");
      r = run_command(fmt::format("{} --model {} --trace {} --world {} --ranks-per-node {} --policy {} {} --out {}",
                                  program("moe-place"), model, trace, world, rpn, p.name, p.args, placement));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const std::string out = dir.file("out_" + tag + ".h5"), report = dir.file("report_" + tag + ".json");
      r = run_command("timeout 120 " + mpirun(world) + program("moe-score") + " " +
                      write_run_file(dir, model, tokens, out,
                                     fmt::format("batch_size: 4\nreport: {}\nparallel:\n  ranks_per_node: {}\n"
                                                 "moe:\n  placement: {}\n",
                                                 report, rpn, placement)));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const Array logprobs = read_array(out, "logprobs");
      if (p.name == "contiguous") {
        contiguous = logprobs;
      } else {
        const double d = max_abs_diff(contiguous, logprobs);
        EXPECT_LE(d, 1e-5);
        std::printf("%s world %d %s %s rpn %d: max |d logprob| %.3g\n", family.name.c_str(), world, p.name.c_str(),
                    p.args.c_str(), rpn, d);
      }
      // Every routed row computed once, wherever its expert's replicas are (contiguous slices
      // experts where a layer has fewer experts than ranks: each slice computes every row).
      if (p.name == "contiguous") continue;
      const nlohmann::json rep = read_report(report);
      for (const nlohmann::json& layer : rep["moe_layers"]) {
        int64_t routed = 0, computed = 0;
        for (const auto& n : layer["tokens_per_expert"]) routed += n.get<int64_t>();
        for (const auto& n : layer["rows_computed_per_rank"]) computed += n.get<int64_t>();
        EXPECT_EQ(computed, routed) << "layer " << layer["layer"];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, PlacementPolicy,
                         testing::Values(Family{"mixtral", "--set num_experts=16", 16}, Family{"prmoe", "", 4}),
                         [](const testing::TestParamInfo<Family>& info) { return info.param.name; });

}  // namespace
}  // namespace moe::test
