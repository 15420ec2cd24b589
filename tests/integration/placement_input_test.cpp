// moe-score with placement files and layouts it must refuse: a placement file that does not fit
// the run stops the job before any heavy work with one line "moe-score: error: FILE: ...", printed
// once; so does backend cuda on a machine without a device, on any number of ranks.
// moe-place refuses what it cannot write.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "support/process.hpp"

namespace moe::test {
namespace {

// The "moe-score: error: " lines of `output`.
std::vector<std::string> error_lines(const std::string& output, const std::string& program) {
  std::vector<std::string> out;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(program + ": error: ", 0) == 0) out.push_back(line);
  return out;
}

class PlacementInput : public testing::Test {
 protected:
  void SetUp() override {
    auto r = run_command(
        fmt::format("{} model {} {} --seed 5", program("moe-synth"), input_file("models/mixtral-tiny.yaml"), model_));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(
        fmt::format("{} tokens {} --vocab 512 --num-seqs 4 --max-len 12 --seed 6", program("moe-synth"), tokens_));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Runs moe-score on `ranks` ranks and returns its single error line (fails unless exactly one).
  std::string refusal(int ranks, const std::string& extra) {
    const std::string run = write_run_file(dir_, model_, tokens_, dir_.file("out.h5"), extra);
    const CommandResult r = run_command("timeout -k 10 60 env " + mpirun(ranks) + program("moe-score") + " " + run);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.exit_code, 124) << "timed out\n" << r.output;
    const auto lines = error_lines(r.output, "moe-score");
    EXPECT_EQ(lines.size(), 1u) << r.output;
    return lines.empty() ? "" : lines[0];
  }

  ScratchDir dir_{"placement-input"};
  std::string model_ = dir_.file("model.h5"), tokens_ = dir_.file("tokens.h5");
};

TEST_F(PlacementInput, PlacementForAnotherWorldSize) {
  const std::string placement = dir_.file("p4.json");
  const auto r = run_command(fmt::format("{} --model {} --world 4 --policy random --seed 2 --out {}",
                                         program("moe-place"), model_, placement));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(refusal(2, "moe:\n  placement: " + placement + "\n"),
            "moe-score: error: " + placement + ": made for world 4, this run has 2 ranks");
}

TEST_F(PlacementInput, PlacementFileMissing) {
  const std::string placement = dir_.file("none.json");
  EXPECT_EQ(refusal(2, "moe:\n  placement: " + placement + "\n"),
            "moe-score: error: " + placement + ": cannot open the placement file");
}

TEST_F(PlacementInput, ContiguousPlacementFileGivesTheDefaultAnswer) {
  const std::string placement = dir_.file("p2.json");
  auto r = run_command(
      fmt::format("{} --model {} --world 2 --policy contiguous --out {}", program("moe-place"), model_, placement));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string a = dir_.file("a.h5"), b = dir_.file("b.h5");
  r = run_command(mpirun(2) + program("moe-score") + " " + write_run_file(dir_, model_, tokens_, a));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(mpirun(2) + program("moe-score") + " " +
                  write_run_file(dir_, model_, tokens_, b, "moe:\n  placement: " + placement + "\n"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Same table, same rows, same products: the logprobs are identical bit for bit.
  r = run_command("h5diff -d 0 " + a + " " + b + " logprobs logprobs");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Several ranks with backend cuda run over NCCL (tests/gpu/score_cuda_test); on a machine where
// that cannot run (no device, or no CUDA build) the one line says why and points to cpu.
TEST_F(PlacementInput, CudaOnSeveralRanksWithoutADeviceSaysWhy) {
  if (std::filesystem::exists("/dev/nvidia0")) GTEST_SKIP() << "an NVIDIA device is present";
  const std::string line = refusal(2, "backend: cuda\n");
  EXPECT_EQ(line.rfind("moe-score: error: backend 'cuda", 0), 0u) << line;
  EXPECT_NE(line.find("cpu"), std::string::npos) << line;
}

TEST_F(PlacementInput, MoePlaceRefusesRanksPerNodeThatDoNotDivide) {
  const auto r = run_command(fmt::format("{} --model {} --world 4 --ranks-per-node 3 --policy random --out {}",
                                         program("moe-place"), model_, dir_.file("p.json")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(error_lines(r.output, "moe-place"),
            std::vector<std::string>{"moe-place: error: --ranks-per-node 3 does not divide --world 4"});
}

}  // namespace
}  // namespace moe::test
