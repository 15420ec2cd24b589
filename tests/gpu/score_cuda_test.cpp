// moe-score with backend cuda against backend cpu on the same model and tokens, end to end
// (engine, device selection, NCCL communicators, every kernel in a real forward pass): one rank
// for each model family, and 2 ranks (one GPU each; flat all-to-all, hierarchical over 2 simulated
// nodes, and tp 2, all over NCCL) when the node has two devices. Skips without a device. As written, this test has NOT
// yet run on a GPU.
#include <gtest/gtest.h>

#include <string>

#include "cuda_backend.hpp"
#include "support/h5_read.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

// fp32 on both sides with different summation orders; far above rounding, far below a bug.
constexpr double kTolerance = 1e-3;

int device_count() {
  int count = 0;
  return cuda_device_available() && cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

struct Case {
  std::string family;
  int ranks;
  std::string extra;  // run-file lines
};

class ScoreCuda : public ::testing::TestWithParam<Case> {};

TEST_P(ScoreCuda, MatchesCpu) {
  const Case& c = GetParam();
  if (device_count() < c.ranks) GTEST_SKIP() << "needs " << c.ranks << " CUDA device(s), found " << device_count();
  ScratchDir dir("score_cuda");
  const std::string model = dir.file("model.h5");
  const std::string tokens = dir.file("tokens.h5");
  ASSERT_EQ(run_command(program("moe-synth") + " model " + input_file("models/" + c.family + "-tiny.yaml") + " " +
                        model + " --seed 3")
                .exit_code,
            0);
  ASSERT_EQ(run_command(program("moe-synth") + " tokens " + tokens +
                        " --vocab 512 --num-seqs 12 --min-len 1 --max-len 90 --seed 4")
                .exit_code,
            0);
  for (const std::string backend : {"cpu", "cuda"}) {
    const std::string run = write_run_file(dir, model, tokens, dir.file(backend + ".h5"),
                                           "backend: " + backend + "\nbatch_size: 5\n" + c.extra);
    const CommandResult r = run_command("timeout 300 " + mpirun(c.ranks) + " " + program("moe-score") + " " + run);
    ASSERT_EQ(r.exit_code, 0) << backend << ":\n" << r.output;
  }
  const double diff =
      max_abs_diff(read_array(dir.file("cuda.h5"), "logprobs"), read_array(dir.file("cpu.h5"), "logprobs"));
  EXPECT_LE(diff, kTolerance) << c.family << " on " << c.ranks << " rank(s)";
}

INSTANTIATE_TEST_SUITE_P(
    Families, ScoreCuda,
    ::testing::Values(Case{"mixtral", 1, ""}, Case{"qwen2moe", 1, ""}, Case{"olmoe", 1, ""}, Case{"prmoe", 1, ""},
                      Case{"mixtral", 2, "moe:\n  alltoall: flat\n"},
                      Case{"qwen2moe", 2, "parallel:\n  tp: 2\nmoe:\n  alltoall: flat\n"},
                      Case{"prmoe", 2, "parallel:\n  ranks_per_node: 1\nmoe:\n  alltoall: hierarchical\n"}),
    [](const auto& info) { return info.param.family + "_" + std::to_string(info.param.ranks) + "ranks"; });

}  // namespace
}  // namespace moe::test
