// moe-convert streams: converting a checkpoint of more than 200 MB keeps the converter's peak
// resident memory under a quarter of the checkpoint's size. The peak is the converter's own VmHWM
// (the high-water mark of its address space since exec, which it prints): wait4's ru_maxrss would
// also count this test process's pages from before the converter's exec (over 200 MB in a CUDA
// build, where the test links cuBLAS).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "support/hf_fixture.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

namespace fs = std::filesystem;

TEST(HfConvertMemory, PeakRssUnderAQuarterOfTheCheckpoint) {
  ScratchDir dir("hf-memory");
  const std::string hf = dir.file("hf");
  CommandResult r =
      run_command(hf_tiny() + " big " + hf + " --mb 210 --seed " + std::to_string(std::random_device{}()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto bytes = static_cast<double>(fs::file_size(hf + "/model.safetensors"));
  ASSERT_GE(bytes, 200e6);
  r = run_command(program("moe-convert") + " " + hf + " " + dir.file("model.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto at = r.output.find("peak RSS ");
  ASSERT_NE(at, std::string::npos) << r.output;
  double peak_mb = 0;
  ASSERT_EQ(std::sscanf(r.output.c_str() + at, "peak RSS %lf MB", &peak_mb), 1) << r.output;
  const double peak = peak_mb * 1e6;
  ASSERT_GT(peak, 1e6) << "an implausible peak: " << r.output;
  std::printf("moe-convert: %.0f MB checkpoint, peak RSS %.1f MB (%.1f%%)\n", bytes / 1e6, peak / 1e6,
              100.0 * peak / bytes);
  RecordProperty("peak_rss_bytes", std::to_string(static_cast<long long>(peak)));
  if (kAddressSanitizer)
    std::printf("AddressSanitizer build: its shadow memory and quarantine count in RSS; the ceiling is not checked\n");
  else
    EXPECT_LT(peak, bytes / 4);
  EXPECT_GE(static_cast<double>(fs::file_size(dir.file("model.h5"))), 0.99 * bytes) << "every tensor written";
}

}  // namespace
}  // namespace moe::test
