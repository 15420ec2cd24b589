// Pinned host tier of a GPU expert cache (see pinned_expert_tier.hpp). UNVERIFIED on a GPU.
#include "pinned_expert_tier.hpp"

#include <cstdio>
#include <cstring>

#include "check.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

void report(cudaError_t rc, const char* what) noexcept {
  if (rc != cudaSuccess)
    std::fprintf(stderr, "moebatch: pinned expert tier: %s failed: %s\n", what, cudaGetErrorString(rc));
}

}  // namespace

PinnedExpertTier::PinnedExpertTier(CudaBackend& backend, std::size_t num_slots, std::size_t slot_bytes)
    : backend_(backend), slot_bytes_(slot_bytes) {
  MOE_CHECK(num_slots > 0 && slot_bytes > 0, "pinned expert tier: {} slots of {} bytes", num_slots, slot_bytes);
  try {
    MOE_CUDA_CHECK(cudaSetDevice(backend.device()));
    MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    slots_.resize(num_slots);
    for (Slot& slot : slots_) {
      slot.memory = backend.alloc(slot_bytes);
      MOE_CUDA_CHECK(cudaEventCreateWithFlags(&slot.loaded, cudaEventDisableTiming));
      MOE_CUDA_CHECK(cudaEventCreateWithFlags(&slot.freed, cudaEventDisableTiming));
    }
  } catch (...) {
    release_resources();
    throw;
  }
}

PinnedExpertTier::~PinnedExpertTier() {
  release_resources();
}

void PinnedExpertTier::release_resources() noexcept {
  if (copy_stream_) report(cudaStreamSynchronize(copy_stream_), "cudaStreamSynchronize");
  // The compute stream may still read a slot that a DeviceBuffer is about to free: cudaFree
  // waits for the device, so only the events and pinned blocks need the copy stream idle.
  for (Slot& slot : slots_) {
    if (slot.loaded) report(cudaEventDestroy(slot.loaded), "cudaEventDestroy");
    if (slot.freed) report(cudaEventDestroy(slot.freed), "cudaEventDestroy");
    slot.loaded = slot.freed = nullptr;
    slot.memory.reset();
  }
  slots_.clear();
  for (Block& block : blocks_) report(cudaFreeHost(block.host), "cudaFreeHost");
  blocks_.clear();
  pinned_bytes_ = 0;
  if (copy_stream_) report(cudaStreamDestroy(copy_stream_), "cudaStreamDestroy");
  copy_stream_ = nullptr;
}

std::size_t PinnedExpertTier::add(const void* host, std::size_t bytes) {
  MOE_CHECK(bytes > 0 && bytes <= slot_bytes_, "pinned expert tier: a block of {} bytes for slots of {} bytes", bytes,
            slot_bytes_);
  void* pinned = nullptr;
  MOE_CUDA_CHECK(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault));
  std::memcpy(pinned, host, bytes);
  blocks_.push_back({pinned, bytes});
  pinned_bytes_ += bytes;
  return blocks_.size() - 1;
}

void PinnedExpertTier::load(std::size_t id, std::size_t slot) {
  MOE_CHECK(id < blocks_.size(), "pinned expert tier: no block {} ({} added)", id, blocks_.size());
  MOE_CHECK(slot < slots_.size(), "pinned expert tier: no slot {} ({} slots)", slot, slots_.size());
  Slot& s = slots_[slot];
  // The compute stream's reads of the old contents come first (a no-op before any release()).
  MOE_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, s.freed, 0));
  MOE_CUDA_CHECK(
      cudaMemcpyAsync(s.memory.data(), blocks_[id].host, blocks_[id].bytes, cudaMemcpyHostToDevice, copy_stream_));
  MOE_CUDA_CHECK(cudaEventRecord(s.loaded, copy_stream_));
}

void* PinnedExpertTier::acquire(std::size_t slot) {
  MOE_CHECK(slot < slots_.size(), "pinned expert tier: no slot {} ({} slots)", slot, slots_.size());
  MOE_CUDA_CHECK(cudaStreamWaitEvent(backend_.stream(), slots_[slot].loaded, 0));
  return slots_[slot].memory.data();
}

void PinnedExpertTier::release(std::size_t slot) {
  MOE_CHECK(slot < slots_.size(), "pinned expert tier: no slot {} ({} slots)", slot, slots_.size());
  MOE_CUDA_CHECK(cudaEventRecord(slots_[slot].freed, backend_.stream()));
}

}  // namespace moe
