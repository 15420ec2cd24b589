// Random placements give one rank's answer (issue 9): for each family, 20 placements written by
// `moe-place --policy random` (seeds over world 2, 4 and 8: uneven expert counts, a rank with no
// experts, experts replicated on 2-3 ranks, uneven expert slices where a layer has fewer experts
// than ranks) run moe-score against a one-rank run of the same fresh random model and tokens,
// alternating dynamic and static gating (static with capacity factor E/k, which drops nothing,
// against a one-rank static run), flat and hierarchical all-to-alls, one and two simulated nodes.
// max |d logprob| <= 1e-5. The reports show that every rank's computed rows add up to the routed
// rows, i.e. each row of a replicated expert was computed once.
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
  int max_experts;  // largest expert count of its layers
  int top_k;
};

class PlacementParity : public testing::TestWithParam<Family> {};

TEST_P(PlacementParity, RandomPlacementsGiveOneRanksAnswer) {
  const Family family = GetParam();
  ScratchDir dir("placement-parity-" + family.name);
  std::random_device rd;
  const unsigned model_seed = rd(), token_seed = rd(), placement_seed = rd() % 1000000;
  SCOPED_TRACE(fmt::format("model seed {}, token seed {}, placement seeds {}..{}", model_seed, token_seed,
                           placement_seed, placement_seed + 19));
  const std::string model = dir.file("model.h5"), tokens = dir.file("tokens.h5");
  auto r = run_command(fmt::format("{} model {} {} --seed {}", program("moe-synth"),
                                   input_file("models/" + family.name + "-tiny.yaml"), model, model_seed));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(fmt::format("{} tokens {} --vocab 512 --num-seqs 9 --min-len 0 --max-len 40 --ragged --seed {}",
                              program("moe-synth"), tokens, token_seed));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Capacity E/k: ceil(E/k * T * k / E) = T rows per expert, more than any expert can get.
  const std::string static_gating =
      fmt::format("moe:\n  gating: static\n  capacity_factor: {}\n", double(family.max_experts) / family.top_k);

  // One-rank answers, per gating.
  std::map<bool, Array> base;
  for (const bool dynamic : {true, false}) {
    const std::string out = dir.file(dynamic ? "base_dynamic.h5" : "base_static.h5");
    r = run_command(
        mpirun(1) + program("moe-score") + " " +
        write_run_file(dir, model, tokens, out,
                       "batch_size: 2\n" + (dynamic ? std::string("moe:\n  gating: dynamic\n") : static_gating)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    base[dynamic] = read_array(out, "logprobs");
  }

  double worst = 0.0;
  // World 8 (oversubscribed 4x here) costs most: 4 of the 20 runs.
  const int worlds[] = {2, 4, 8, 2, 4};
  for (int i = 0; i < 20; ++i) {
    const int world = worlds[i % 5];
    const bool dynamic = i % 2 == 0;
    const int nodes = world > 2 && (i / 5) % 2 == 1 ? 2 : 1;
    const std::string alltoall = (i / 2) % 2 == 0 ? "hierarchical" : "flat";
    const unsigned seed = placement_seed + static_cast<unsigned>(i);
    SCOPED_TRACE(fmt::format("world {}, {} node(s), {}, {} gating, placement seed {}", world, nodes, alltoall,
                             dynamic ? "dynamic" : "static", seed));
    const std::string placement = dir.file(fmt::format("placement{}.json", i));
    r = run_command(fmt::format("{} --model {} --world {} --ranks-per-node {} --policy random --seed {} --out {}",
                                program("moe-place"), model, world, world / nodes, seed, placement));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string out = dir.file(fmt::format("out{}.h5", i)), report = dir.file(fmt::format("report{}.json", i));
    std::string moe = dynamic ? std::string("moe:\n  gating: dynamic\n") : static_gating;
    moe += "  alltoall: " + alltoall + "\n  placement: " + placement + "\n";
    const std::string run_file = write_run_file(
        dir, model, tokens, out,
        fmt::format("batch_size: 2\nreport: {}\nparallel:\n  ranks_per_node: {}\n{}", report, world / nodes, moe));
    r = run_command("timeout 120 " + mpirun(world) + program("moe-score") + " " + run_file);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const double d = max_abs_diff(base[dynamic], read_array(out, "logprobs"));
    EXPECT_LE(d, 1e-5);
    worst = std::max(worst, d);

    // Each routed row was computed once: the rows the ranks computed add up to the rows routed
    // (times the slices of sliced experts, which the placement file lists), plus padding.
    // Nothing is dropped at capacity E/k, so routed rows are the rows kept.
    const nlohmann::json placement_doc = read_report(placement);
    const nlohmann::json rep = read_report(report);
    ASSERT_EQ(rep["moe_layers"].size(), placement_doc["layers"].size());
    for (std::size_t l = 0; l < rep["moe_layers"].size(); ++l) {
      const nlohmann::json& layer = rep["moe_layers"][l];
      const auto routed = layer["tokens_per_expert"].get<std::vector<int64_t>>();
      int64_t want = 0;
      bool sliced = false;
      for (const auto& entry : placement_doc["layers"][l]["experts"]) {
        const auto& holders = entry["holders"];
        const int64_t copies = holders[0]["role"] == "slice" ? static_cast<int64_t>(holders.size()) : 1;
        want += routed[entry["expert"].get<std::size_t>()] * copies;
        sliced = sliced || copies > 1;
      }
      if (!dynamic) {
        if (sliced) continue;  // the report sums padding over experts; each slice computes its expert's
        want += layer["padded_rows"].get<int64_t>();
      }
      int64_t computed = 0;
      for (const auto& rows : layer["rows_computed_per_rank"]) computed += rows.get<int64_t>();
      EXPECT_EQ(computed, want) << "layer " << layer["layer"];
    }
  }
  std::printf("%s: worst max |d logprob| over 20 random placements: %.3g\n", family.name.c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Families, PlacementParity,
                         testing::Values(Family{"mixtral", 8, 2}, Family{"qwen2moe", 12, 4}, Family{"prmoe", 8, 1}),
                         [](const testing::TestParamInfo<Family>& info) { return info.param.name; });

}  // namespace
}  // namespace moe::test
