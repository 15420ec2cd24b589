// moe-place: writes a placement file (docs/formats.md) for a model and a world size, which
// moe-score reads with `moe.placement: FILE`. See `moe-place --help`.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/output_file.hpp"
#include "main_support.hpp"
#include "moe/placement_file.hpp"
#include "moe/placement_random.hpp"

int main(int argc, char** argv) {
  CLI::App app{"moe-place: write an expert placement file (which ranks hold which experts) for moe-score.",
               "moe-place"};
  app.set_version_flag("--version", std::string("moe-place ") + MOE_VERSION);
  std::string model_path, policy, out;
  int world = 0, ranks_per_node = 0;
  uint64_t seed = 1;
  app.add_option("--model", model_path, "checkpoint (HDF5) whose shape the placement is for")->required();
  app.add_option("--world", world, "ranks of the runs that will use it")->required()->check(CLI::PositiveNumber);
  app.add_option("--ranks-per-node", ranks_per_node, "ranks per node (recorded; must divide --world)");
  app.add_option("--policy", policy,
                 "contiguous: today's default (ranges, slicing when experts < ranks); random: random experts per "
                 "rank, uneven counts, a rank with none, replicas on 2-3 ranks, uneven slices when experts < ranks")
      ->required()
      ->check(CLI::IsMember({"contiguous", "random"}));
  app.add_option("--seed", seed, "random seed (policy random)")->capture_default_str();
  app.add_option("--out", out, "placement file to write (JSON)")->required();
  bool force = false;
  app.add_flag("--force", force, "replace --out even when it is not a placement file");
  if (const auto code = moe::parse_command_line(app, "moe-place", argc, argv)) return *code;

  return moe::run_main("moe-place", argc, argv, [&] {
    MOE_CHECK(ranks_per_node >= 0 && (ranks_per_node == 0 || world % ranks_per_node == 0),
              "--ranks-per-node {} does not divide --world {}", ranks_per_node, world);
    moe::CheckpointReader ckpt(model_path, MPI_COMM_SELF);
    const moe::ModelConfig& config = ckpt.config();
    const moe::ExpertPlacement placement =
        policy == "contiguous" ? moe::ExpertPlacement(config, world) : moe::random_placement(config, world, seed);
    moe::StagedOutput output("--out", out, moe::OutputKind::placement, {{"--model", model_path}}, {force, false});
    moe::write_placement_file(output.partial(), placement, config,
                              {policy, policy == "random" ? seed : 0, ranks_per_node});
    output.commit();
    fmt::print("moe-place: wrote {} ({} placement for {} ranks)\n", out, policy, world);
    return 0;
  });
}
