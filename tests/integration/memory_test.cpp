// A 4096-token batch with a 32000-token vocabulary must never hold a [tokens x vocab] logits
// matrix (524 MB in fp32): the LM head works in tiles. The run report's peak figures show it.
// Also: the batch loop allocates nothing once the workspace is sized (no growth after warm-up).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/process.hpp"

namespace moe::test {
namespace {

TEST(Memory, LmHeadNeverMaterializesTokensTimesVocab) {
  ScratchDir dir("memory");
  const int64_t vocab = 32000;
  const int64_t tokens_per_batch = 4096;  // 8 sequences of 512
  auto r = run_command(program("moe-synth") + " model " + input_file("models/mixtral-tiny.yaml") + " " +
                       dir.file("model.h5") + " --set vocab_size=32000 --set max_positions=512");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(program("moe-synth") + " tokens " + dir.file("tokens.h5") +
                  " --vocab 32000 --num-seqs 16 --min-len 512 --max-len 512 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string run = write_run_file(dir, dir.file("model.h5"), dir.file("tokens.h5"), dir.file("scores.h5"),
                                         "batch_size: 8\nreport: " + dir.file("report.json") + "\n");
  r = run_command(program("moe-score") + " " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const auto report = nlohmann::json::parse(std::ifstream(dir.file("report.json")));
  const double logits_bytes = static_cast<double>(tokens_per_batch * vocab * 4);
  const double backend_peak = report["memory"]["backend_peak_bytes_max_over_ranks"].get<double>();
  const double rss_peak = report["memory"]["peak_rss_bytes_max_over_ranks"].get<double>();
  std::printf("logits matrix would be %.0f MiB; backend peak %.1f MiB, process peak RSS %.1f MiB\n",
              logits_bytes / 1048576, backend_peak / 1048576, rss_peak / 1048576);
  // Everything the backend holds at once (weights, activations, LM-head tile) is far below it.
  EXPECT_LT(backend_peak, logits_bytes / 8);
  // And so is the whole process, MPI and HDF5 included.
  EXPECT_LT(rss_peak, logits_bytes / 2);
  EXPECT_EQ(report["memory"]["workspace_growths_in_batch_loop"].get<int64_t>(), 0);
}

TEST(Memory, BatchLoopDoesNotGrowWorkspaceWithRaggedBatches) {
  ScratchDir dir("growth");
  auto r = run_command(program("moe-synth") + " model " + input_file("models/qwen2moe-tiny.yaml") + " " +
                       dir.file("model.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(program("moe-synth") + " tokens " + dir.file("tokens.h5") +
                  " --vocab 512 --num-seqs 37 --min-len 0 --max-len 100 --ragged --seed 9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* gating : {"dynamic", "static"}) {
    const std::string run = write_run_file(
        dir, dir.file("model.h5"), dir.file("tokens.h5"), dir.file("scores.h5"),
        std::string("batch_size: 5\nmoe:\n  gating: ") + gating + "\nreport: " + dir.file("report.json") + "\n");
    r = run_command(program("moe-score") + " " + run);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto report = nlohmann::json::parse(std::ifstream(dir.file("report.json")));
    EXPECT_EQ(report["memory"]["workspace_growths_in_batch_loop"].get<int64_t>(), 0) << gating;
  }
}

}  // namespace
}  // namespace moe::test
