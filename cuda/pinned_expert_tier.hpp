#pragma once
// The slow tier of an expert cache on a GPU (DESIGN.md, "Expert store"): expert weights kept in
// pinned (page-locked) host memory and copied into device slots on a copy stream of their own.
// Each load records an event; acquire() makes the backend's compute stream wait for exactly that
// copy, on the device, without blocking the host; release() records where the compute stream is
// done with a slot, and the next load into that slot waits for it. So loads started when the
// active experts become known (after the counts exchange) run while the compute stream carries
// the payload all-to-all, and the experts' GEMMs start as soon as their weights have landed.
//
// A building block for the cached expert store: it holds bytes and slots, not the eviction policy
// (which expert goes to which slot is the store's decision).
//
// STATUS: compiled without a GPU; unverified until tests/gpu/pinned_expert_tier_test runs on one.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "backend/backend.hpp"
#include "cuda_backend.hpp"

namespace moe {

class PinnedExpertTier {
 public:
  // num_slots device slots of slot_bytes each (backend memory, counted in its bytes_in_use()).
  PinnedExpertTier(CudaBackend& backend, std::size_t num_slots, std::size_t slot_bytes);
  // Never throws: waits for the copy stream, then frees pinned memory, events and the stream.
  ~PinnedExpertTier();
  PinnedExpertTier(const PinnedExpertTier&) = delete;
  PinnedExpertTier& operator=(const PinnedExpertTier&) = delete;

  // Copies `bytes` (at most slot_bytes) of ordinary host memory into a new pinned block; returns
  // the block's id (0, 1, ... in order of adding).
  std::size_t add(const void* host, std::size_t bytes);
  // Enqueues the copy of block `id` into `slot` on the copy stream, after the compute stream's
  // last release() of that slot; returns at once.
  void load(std::size_t id, std::size_t slot);
  // The compute stream waits (on the device) for the last load into `slot`; returns the slot's
  // device address, valid for work enqueued on the compute stream from now on.
  void* acquire(std::size_t slot);
  // Marks the compute stream's work enqueued so far as the last use of `slot`'s contents.
  void release(std::size_t slot);

  std::size_t num_blocks() const { return blocks_.size(); }
  std::size_t pinned_bytes() const { return pinned_bytes_; }
  cudaStream_t copy_stream() const { return copy_stream_; }

 private:
  struct Block {
    void* host = nullptr;  // pinned
    std::size_t bytes = 0;
  };
  struct Slot {
    DeviceBuffer memory;
    cudaEvent_t loaded = nullptr;  // recorded on the copy stream after each load
    cudaEvent_t freed = nullptr;   // recorded on the compute stream by release()
  };
  void release_resources() noexcept;

  CudaBackend& backend_;
  std::size_t slot_bytes_;
  cudaStream_t copy_stream_ = nullptr;
  std::vector<Block> blocks_;
  std::vector<Slot> slots_;
  std::size_t pinned_bytes_ = 0;
};

}  // namespace moe
