// PinnedExpertTier on a device: blocks loaded into rotating slots arrive intact, a load into a
// slot waits for the compute stream's release of it (the compute stream overwrites the slot just
// before releasing; the load must land after that), and bad ids or sizes are refused. Skips
// without a device. As written, this test has NOT yet run on a GPU.
#include "pinned_expert_tier.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "cuda_backend.hpp"

namespace moe {
namespace {

class PinnedExpertTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no usable CUDA device";
    backend_ = std::make_unique<CudaBackend>(0);
  }
  std::vector<float> download(const void* slot, std::size_t n) {
    std::vector<float> out(n);
    backend_->copy_to_host(out.data(), slot, n * sizeof(float));  // on the compute stream
    return out;
  }
  std::unique_ptr<CudaBackend> backend_;
};

TEST_F(PinnedExpertTierTest, BlocksArriveInRotatingSlots) {
  const std::size_t n = 1 << 18;  // 1 MiB blocks: copies long enough to race if unordered
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<std::vector<float>> blocks(5, std::vector<float>(n));
  PinnedExpertTier tier(*backend_, 2, n * sizeof(float));
  for (auto& b : blocks) {
    for (float& v : b) v = dist(rng);
    tier.add(b.data(), b.size() * sizeof(float));
  }
  EXPECT_EQ(tier.num_blocks(), 5u);
  EXPECT_EQ(tier.pinned_bytes(), 5 * n * sizeof(float));
  for (std::size_t id = 0; id < blocks.size(); ++id) {
    const std::size_t slot = id % 2;
    tier.load(id, slot);
    void* dev = tier.acquire(slot);
    ASSERT_EQ(download(dev, n), blocks[id]) << "block " << id << " in slot " << slot;
    // The compute stream writes the slot, then releases it: the next load must land after this.
    DeviceBuffer scratch = backend_->alloc(n * sizeof(float));
    backend_->copy(dev, scratch.data(), n * sizeof(float));
    tier.release(slot);
  }
  // A block loads again into a slot the compute stream has overwritten and released.
  tier.load(0, 0);
  ASSERT_EQ(download(tier.acquire(0), n), blocks[0]);
}

TEST_F(PinnedExpertTierTest, RefusesBadIdsAndSizes) {
  PinnedExpertTier tier(*backend_, 1, 64);
  std::vector<char> big(65);
  EXPECT_THROW(tier.add(big.data(), big.size()), Error);
  tier.add(big.data(), 64);
  EXPECT_THROW(tier.load(1, 0), Error);
  EXPECT_THROW(tier.load(0, 1), Error);
  EXPECT_THROW(tier.acquire(1), Error);
}

}  // namespace
}  // namespace moe
