// The safetensors reader's own pieces: F16 decoding for every bit pattern, and the header checks
// on hand-made files (the integration tests cover whole Hugging Face folders).
#include "io/safetensors.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "core/error.hpp"
#include "support/process.hpp"

namespace moe {
namespace {

using testing::HasSubstr;

// IEEE binary16 by its definition: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m.
double half_by_definition(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  if (e == 0x1f) return m ? NAN : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

TEST(Safetensors, HalfToFloatEveryPattern) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const double want = half_by_definition(static_cast<uint16_t>(h));
    const float got = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << "pattern " << h;
      EXPECT_EQ(std::signbit(got), (h >> 15) != 0) << h;
    }
  }
}

// A file with the given header text and `data_bytes` random bytes after it.
std::string write_file(const test::ScratchDir& dir, const std::string& header, std::size_t data_bytes) {
  const std::string path = dir.file("t.safetensors");
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header;
  std::mt19937 rng(std::random_device{}());
  for (std::size_t i = 0; i < data_bytes; ++i) out.put(static_cast<char>(rng()));
  return path;
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ReadsF32AndBf16) {
  test::ScratchDir dir("safetensors");
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"__metadata__":{"format":"pt"}})";
  const std::string path = write_file(dir, header, 32);
  SafetensorsFile f(path);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.info("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.info("b").dtype, SafeDType::bf16);
  std::ifstream raw(path, std::ios::binary);
  raw.seekg(static_cast<std::streamoff>(8 + header.size()));
  float a[6];
  raw.read(reinterpret_cast<char*>(a), sizeof(a));
  float got[5];
  f.read_f32("a", 1, 5, got);
  EXPECT_EQ(std::memcmp(got, a + 1, sizeof(got)), 0);  // bit for bit (random bytes may be NaNs)
}

TEST(Safetensors, RefusesBadHeaders) {
  test::ScratchDir dir("safetensors");
  EXPECT_THAT(error_of(write_file(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12)),
              HasSubstr("tensor 'w' has data_offsets [0, 16] outside the data section of 12 bytes"));
  EXPECT_THAT(error_of(write_file(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16)),
              HasSubstr("tensor 'w' holds 12 bytes, but its shape and dtype need 16"));
  EXPECT_THAT(error_of(write_file(dir, R"({"w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4)),
              HasSubstr("tensor 'w' has dtype 'I8', which is not supported"));
  EXPECT_THAT(error_of(write_file(dir, R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
              HasSubstr("tensor 'w' has a shape entry"));
  EXPECT_THAT(error_of(write_file(dir, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16]},)", 4)),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(
      error_of(write_file(dir, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
      HasSubstr("impossibly large shape"));
  EXPECT_THAT(error_of(write_file(dir, "", 0)), HasSubstr("not valid JSON"));
}

// Tensors whose bytes overlap would read as each other's weights: refused, naming both (issue
// 12). Tensors that only touch, and empty tensors anywhere, are fine.
TEST(Safetensors, OverlappingDataOffsetsAreRefused) {
  test::ScratchDir dir("safetensors-overlap");
  const std::string overlap =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  EXPECT_THAT(error_of(write_file(dir, overlap, 16)), HasSubstr("'a' and 'b' overlap"));
  const std::string same =
      R"({"x":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_THAT(error_of(write_file(dir, same, 8)), HasSubstr("overlap"));
  const std::string touching =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})";
  EXPECT_EQ(error_of(write_file(dir, touching, 16)), "");
}

}  // namespace
}  // namespace moe
