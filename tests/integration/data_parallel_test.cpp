// Data parallelism over ranks (every rank holds the whole model and runs every world-th batch):
// 2 and 4 ranks give one rank's answer, also when some ranks get no sequences at all.
#include <gtest/gtest.h>

#include <cmath>

#include "support/h5_read.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

void expect_same_as_one_rank(const std::string& family, int num_seqs, int batch_size) {
  ScratchDir dir("dp-" + family);
  auto r = run_command(program("moe-synth") + " model " + input_file("models/" + family + "-tiny.yaml") + " " +
                       dir.file("model.h5") + " --seed 11");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(program("moe-synth") + " tokens " + dir.file("tokens.h5") + " --vocab 512 --num-seqs " +
                  std::to_string(num_seqs) + " --min-len 1 --max-len 40 --seed 12");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string extra = "batch_size: " + std::to_string(batch_size) + "\n";
  const std::string one = dir.file("one.h5");
  r = run_command(mpirun(1) + program("moe-score") + " " +
                  write_run_file(dir, dir.file("model.h5"), dir.file("tokens.h5"), one, extra));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Array base = read_array(one, "logprobs");
  const Array base_seq = read_array(one, "seq_logprob");
  for (int ranks : {2, 4}) {
    const std::string out = dir.file("world" + std::to_string(ranks) + ".h5");
    r = run_command("timeout 120 " + mpirun(ranks) + program("moe-score") + " " +
                    write_run_file(dir, dir.file("model.h5"), dir.file("tokens.h5"), out, extra));
    ASSERT_EQ(r.exit_code, 0) << ranks << " ranks: " << r.output;
    EXPECT_LE(max_abs_diff(base, read_array(out, "logprobs")), 1e-5) << ranks << " ranks";
    EXPECT_LE(max_abs_diff(base_seq, read_array(out, "seq_logprob")), 1e-4) << ranks << " ranks";
  }
}

TEST(DataParallel, MixtralMatchesOneRank) {
  expect_same_as_one_rank("mixtral", 29, 4);
}
TEST(DataParallel, PrMoeMatchesOneRank) {
  expect_same_as_one_rank("prmoe", 13, 2);
}
// 3 sequences, batch 1, 4 ranks: rank 3 never gets a batch but joins every collective write.
TEST(DataParallel, RanksWithoutSequencesTakePart) {
  expect_same_as_one_rank("qwen2moe", 3, 1);
}

}  // namespace
}  // namespace moe::test
