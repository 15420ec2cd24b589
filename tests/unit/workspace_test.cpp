// moe::Workspace: per-step buffers by slot that grow only when a step asks for more than the slot
// holds, and are reused otherwise, so the per-batch path allocates nothing after the largest batch.
#include "backend/workspace.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_backend.hpp"

namespace moe::test {
namespace {

TEST(Workspace, GrowsOnlyWhenAskedForMore) {
  CpuBackend backend;
  {
    Workspace ws(backend);
    EXPECT_EQ(ws.growths(), 0u);
    EXPECT_EQ(ws.bytes(), 0u);
    EXPECT_EQ(&ws.backend(), &backend);

    float* a = ws.get<float>(0, 100);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(ws.growths(), 1u);
    EXPECT_EQ(ws.bytes(), 400u);
    a[99] = 1.5f;  // the whole request is usable

    // Smaller or equal requests, in any element type, reuse the slot.
    EXPECT_EQ(ws.get<float>(0, 100), a);
    EXPECT_EQ(ws.get<float>(0, 7), a);
    EXPECT_EQ(reinterpret_cast<void*>(ws.get<double>(0, 50)), reinterpret_cast<void*>(a));
    EXPECT_EQ(reinterpret_cast<void*>(ws.get<std::byte>(0, 400)), reinterpret_cast<void*>(a));
    EXPECT_EQ(ws.get<float>(0, 0), a);
    EXPECT_EQ(ws.growths(), 1u);
    EXPECT_EQ(ws.bytes(), 400u);

    // One byte more grows it.
    ws.get<std::byte>(0, 401);
    EXPECT_EQ(ws.growths(), 2u);
    EXPECT_EQ(ws.bytes(), 401u);
    ws.get<float>(0, 101);
    EXPECT_EQ(ws.growths(), 3u);
    EXPECT_EQ(ws.bytes(), 404u);
  }
  EXPECT_EQ(backend.bytes_in_use(), 0u) << "the workspace frees its buffers";
}

TEST(Workspace, SlotsAreIndependentAndBytesIsTheirSum) {
  CpuBackend backend;
  {
    Workspace ws(backend);
    // A slot far beyond the current ones leaves the ones between empty.
    int32_t* c = ws.get<int32_t>(3, 10);
    float* a = ws.get<float>(0, 25);
    EXPECT_EQ(ws.growths(), 2u);
    EXPECT_EQ(ws.bytes(), 40u + 100u);
    EXPECT_NE(reinterpret_cast<void*>(a), reinterpret_cast<void*>(c));
    EXPECT_EQ(ws.bytes(), backend.bytes_in_use());

    double* b = ws.get<double>(1, 3);
    EXPECT_EQ(ws.growths(), 3u);
    EXPECT_EQ(ws.bytes(), 40u + 100u + 24u);
    EXPECT_EQ(ws.bytes(), backend.bytes_in_use());

    // Growing one slot leaves the others in place.
    ws.get<float>(0, 1000);
    EXPECT_EQ(ws.growths(), 4u);
    EXPECT_EQ(ws.bytes(), 40u + 4000u + 24u);
    EXPECT_EQ(ws.get<int32_t>(3, 10), c);
    EXPECT_EQ(ws.get<double>(1, 3), b);
    EXPECT_EQ(ws.growths(), 4u);
    EXPECT_EQ(ws.bytes(), backend.bytes_in_use());
  }
  EXPECT_EQ(backend.bytes_in_use(), 0u);
}

// Repeating a step's requests after the first (largest) one allocates nothing.
TEST(Workspace, ReuseAcrossStepsDoesNotGrow) {
  CpuBackend backend;
  Workspace ws(backend);
  auto step = [&](std::size_t tokens) {
    ws.get<float>(0, tokens * 64);
    ws.get<int32_t>(1, tokens);
    ws.get<float>(2, tokens * 2 * 96);
  };
  step(300);
  const std::size_t growths = ws.growths();
  const std::size_t bytes = ws.bytes();
  EXPECT_EQ(growths, 3u);
  for (std::size_t tokens : {300u, 17u, 1u, 299u, 300u}) step(tokens);
  EXPECT_EQ(ws.growths(), growths);
  EXPECT_EQ(ws.bytes(), bytes);
}

// Growth frees the old buffer before allocating the new one: peak memory is the new size.
TEST(Workspace, GrowthFreesBeforeAllocating) {
  CpuBackend backend;
  Workspace ws(backend);
  ws.get<float>(0, 1000);
  backend.reset_peak();
  ws.get<float>(0, 1500);
  EXPECT_EQ(backend.bytes_in_use(), 6000u);
  EXPECT_EQ(backend.peak_bytes(), 6000u) << "old and new buffers were held together";
}

}  // namespace
}  // namespace moe::test
