// A full disk ends the job within seconds with one line naming the file and the operation, exit
// code 74, no crash, and the previous results at the output path unchanged (issue 12: before, 2
// ranks hung forever, 1 rank crashed in MPI_Finalize, and an unwritable report still exited 0).
// The disk is a 1 MiB tmpfs mounted in the test's folder: root only, skipped otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace moe::test {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;
using testing::Not;

constexpr int kIoError = 74;  // README "Outputs and exit codes"

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> error_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("moe-score: error:", 0) == 0) lines.push_back(line);
  return lines;
}

class FullDisk : public testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
    fs::create_directory(disk());
    if (mount("tmpfs", disk().c_str(), "tmpfs", 0, "size=1M") != 0) GTEST_SKIP() << "cannot mount a tmpfs here";
    mounted_ = true;
    const std::string synth = program("moe-synth");
    auto r = run_command(synth + " model " + input_file("models/mixtral-tiny.yaml") + " " + dir_.file("model.h5"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Results of 24 sequences fit the disk; 1500 sequences of up to 64 tokens (384 KB of
    // logprobs) do not fit beside the filler below, and fill it after a few batches.
    r = run_command(synth + " tokens " + dir_.file("small.h5") + " --vocab 512 --num-seqs 24 --max-len 64");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(synth + " tokens " + dir_.file("big.h5") + " --vocab 512 --num-seqs 1500 --max-len 64");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write_run_file(dir_, "model.h5", "small.h5", "disk/scores.h5", "batch_size: 64\n");
  }
  void TearDown() override {
    if (mounted_) umount2(disk().c_str(), MNT_DETACH);
  }
  std::string disk() const { return dir_.file("disk"); }
  CommandResult score(const std::string& args, int ranks) const {
    return run_command("cd " + dir_.path().string() + " && timeout -k 5 60 " + mpirun(ranks) + program("moe-score") +
                       " run.yaml " + args);
  }
  // The contract: exit 74 within 30 s, one error line naming `file` and what failed, no crash.
  void expect_io_error(const CommandResult& r, double seconds, const std::string& file) {
    EXPECT_EQ(r.exit_code, kIoError) << r.output;
    EXPECT_LT(seconds, 30.0) << r.output;
    EXPECT_THAT(r.output, Not(HasSubstr("Segmentation")));
    EXPECT_THAT(r.output, Not(HasSubstr("signal 11")));
    EXPECT_THAT(r.output, Not(HasSubstr("terminate called")));
    const auto lines = error_lines(r.output);
    ASSERT_EQ(lines.size(), 1u) << r.output;
    EXPECT_THAT(lines[0], HasSubstr(file));
    EXPECT_THAT(lines[0], HasSubstr("failed"));
  }

  ScratchDir dir_{"full-disk"};
  bool mounted_ = false;
};

TEST_F(FullDisk, ResultsOnAFullDiskEndTheJobAndKeepThePreviousResults) {
  auto r = score("", 1);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string previous = bytes_of(disk() + "/scores.h5");
  // Leave about 256 KB: the time to the failure is then mostly start-up, not scoring.
  std::ofstream(disk() + "/filler", std::ios::binary) << std::string(700 << 10, 'x');
  for (int ranks : {1, 2, 4}) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    const auto start = std::chrono::steady_clock::now();
    r = score("--set input=big.h5", ranks);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%d rank(s): exit %d after %.1f s\n", ranks, r.exit_code, seconds);
    expect_io_error(r, seconds, "disk/scores.h5.partial");
    EXPECT_TRUE(bytes_of(disk() + "/scores.h5") == previous) << "the previous results changed";
    // Space for the next case; the stale lock is reused and removed by a later run.
    fs::remove(disk() + "/scores.h5.partial");
  }
}

TEST_F(FullDisk, AReportThatCannotBeWrittenIsAnError) {
  // Fill the disk but one 4 KiB page, which the report's lock file takes: the report itself,
  // written at the end of the run, finds no space.
  std::ofstream(disk() + "/filler", std::ios::binary) << std::string((1 << 20) - 4096, 'x');
  const auto start = std::chrono::steady_clock::now();
  const auto r = score("--set output=scores.h5 --set report=disk/scores.json", 2);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  expect_io_error(r, seconds, "disk/scores.json");
  EXPECT_THAT(r.output, Not(HasSubstr("run report ->")));
  EXPECT_FALSE(fs::exists(disk() + "/scores.json"));
}

}  // namespace
}  // namespace moe::test
