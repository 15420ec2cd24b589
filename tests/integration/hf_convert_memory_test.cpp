// moe-convert streams: converting a checkpoint of more than 200 MB keeps the converter's peak
// resident memory under a quarter of the checkpoint's size. The peak comes from wait4's rusage
// of the converter process alone (not the Python generator, nor this test).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "support/hf_fixture.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

namespace fs = std::filesystem;

struct MeasuredRun {
  int exit_code = -1;
  long peak_rss_kib = 0;
};

// Runs argv[0] with argv and returns its exit code and peak RSS.
MeasuredRun run_measured(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  MeasuredRun run;
  int status = 0;
  rusage usage{};
  if (pid > 0 && wait4(pid, &status, 0, &usage) == pid) {
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    run.peak_rss_kib = usage.ru_maxrss;  // KiB on Linux
  }
  return run;
}

TEST(HfConvertMemory, PeakRssUnderAQuarterOfTheCheckpoint) {
  ScratchDir dir("hf-memory");
  const std::string hf = dir.file("hf");
  CommandResult r =
      run_command(hf_tiny() + " big " + hf + " --mb 210 --seed " + std::to_string(std::random_device{}()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto bytes = static_cast<double>(fs::file_size(hf + "/model.safetensors"));
  ASSERT_GE(bytes, 200e6);
  const MeasuredRun run = run_measured({program("moe-convert"), hf, dir.file("model.h5")});
  ASSERT_EQ(run.exit_code, 0);
  const double peak = static_cast<double>(run.peak_rss_kib) * 1024.0;
  std::printf("moe-convert: %.0f MB checkpoint, peak RSS %.1f MB (%.1f%%)\n", bytes / 1e6, peak / 1e6,
              100.0 * peak / bytes);
  RecordProperty("peak_rss_bytes", std::to_string(static_cast<long long>(peak)));
  EXPECT_LT(peak, bytes / 4);
  EXPECT_GE(static_cast<double>(fs::file_size(dir.file("model.h5"))), 0.99 * bytes) << "every tensor written";
}

}  // namespace
}  // namespace moe::test
