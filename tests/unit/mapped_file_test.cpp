// io/mapped_file: a whole file mapped read-only, its bytes where the file has them; a file that
// cannot be mapped gives nothing (the caller reads instead); and a mapped file truncated under a
// running program ends it with one line naming the file and exit code 1 (SIGBUS handler), not a
// bare crash.
#include "io/mapped_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace moe {
namespace {

std::string scratch_file(const std::string& tag, const std::vector<char>& bytes) {
  const std::string path = testing::TempDir() + "mapped_file_" + tag + "_" + std::to_string(::getpid());
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::vector<char> random_bytes(std::size_t n) {
  std::mt19937 rng(std::random_device{}());
  std::vector<char> bytes(n);
  for (char& b : bytes) b = static_cast<char>(rng());
  return bytes;
}

TEST(MappedFile, HoldsTheFilesBytes) {
  const std::vector<char> bytes = random_bytes((std::size_t{3} << 20) + 123);  // past a huge page
  const std::string path = scratch_file("bytes", bytes);
  {
    const auto mapped = MappedFile::open(path);
    ASSERT_NE(mapped, nullptr);
    ASSERT_EQ(mapped->size(), bytes.size());
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(mapped->data()) % (std::uintptr_t{2} << 20), 0u)
        << "the mapping should start at a 2 MiB boundary";
    mapped->will_need(4097, 10000);
    EXPECT_EQ(std::memcmp(mapped->data(), bytes.data(), bytes.size()), 0);
  }
  std::remove(path.c_str());
}

TEST(MappedFile, NothingForAMissingOrEmptyFile) {
  EXPECT_EQ(MappedFile::open(testing::TempDir() + "no_such_file_for_mapped_file_test"), nullptr);
  const std::string empty = scratch_file("empty", {});
  EXPECT_EQ(MappedFile::open(empty), nullptr);
  std::remove(empty.c_str());
}

TEST(MappedFileDeathTest, TruncatedWhileMappedEndsWithOneLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::vector<char> bytes = random_bytes(std::size_t{1} << 20);
  const std::string path = scratch_file("truncated", bytes);
  EXPECT_EXIT(
      {
        const auto mapped = MappedFile::open(path);
        if (mapped == nullptr || ::truncate(path.c_str(), 4096) != 0) std::_Exit(3);
        volatile std::byte sink = mapped->data()[mapped->size() - 1];  // past the new end: SIGBUS
        (void)sink;
        std::_Exit(4);
      },
      testing::ExitedWithCode(1), "error: .*mapped_file_truncated.*changed \\(shorter\\) while its weights were mapped");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace moe
