#pragma once
// Expert buffering (Huang et al.): per MoE layer this rank keeps `slots` of its local experts in
// backend memory, the rest in the checkpoint file. At the prefetch hook (the counts exchange has
// said which local experts this batch needs) the layer's ExpertCacheBook picks the slots, and the
// misses that fit without evicting an expert of this batch are queued on the I/O thread
// (ExpertLoader), so they load while the payload all-to-all runs. lease() then waits for an
// expert's load to land (the wait is the stall the report shows); an expert that found no slot at
// the hook is loaded on demand once computed experts have been released (MoeLayer leases at most
// lease_capacity = slots experts at once).
//
// An expert's slot holds the same bytes, in the same layout, as ResidentExpertStore's block of it
// (gate rows then up rows, down; f32 or bf16 as stored; only this rank's FFN columns), so the
// grouped GEMM and its result are unchanged.
#include <memory>
#include <string>
#include <vector>

#include "io/expert_extents.hpp"
#include "io/trace_reader.hpp"
#include "moe/cache/cache_book.hpp"
#include "moe/cache/eviction.hpp"
#include "moe/expert_loader.hpp"
#include "moe/expert_store.hpp"

namespace moe {

struct CachedExpertStoreOptions {
  std::vector<int64_t> layer_slots;  // [num_layers] slots per MoE layer (ExpertCacheSettings)
  std::string policy;                // lifo | lru | belady
  std::vector<RequestSteps> future;  // belady: see set_future
};

class CachedExpertStore final : public ExpertStore {
 public:
  // Maps every local expert's bytes in the checkpoint (HDF5 metadata, on this thread) and
  // allocates the slots; loads nothing yet.
  CachedExpertStore(CheckpointReader& ckpt, Backend& backend, const ExpertPlacement& placement, int rank,
                    CachedExpertStoreOptions options);
  ~CachedExpertStore() override;
  // belady: per layer, this rank's requests in the batch loop (local_request_steps); set before
  // begin_run.
  void set_future(std::vector<RequestSteps> future) { options_.future = std::move(future); }

  ExpertLease lease(int64_t layer, int64_t expert) override;
  void prefetch(int64_t layer, const std::vector<int64_t>& experts) override;
  std::size_t resident_bytes() const override { return bytes_; }
  int64_t expert_ffn(int64_t layer, int64_t expert) const override;
  int64_t lease_capacity(int64_t layer) const override;
  void begin_run() override;
  std::vector<ExpertCacheLayerStats> cache_stats() const override;

 protected:
  void release(int64_t layer, int64_t expert) noexcept override;

 private:
  struct Layer {
    int64_t slots = 0;
    std::vector<LocalExpert> local;  // compute order
    std::vector<int64_t> local_of;   // [E] index into local, -1 if not held
    ExpertTensorExtent gate, up, down;
    DType dtype = DType::f32;
    std::size_t in_bytes = 0, out_bytes = 0;  // one slot's blocks (the widest local expert)
    DeviceBuffer in, out;                     // [slots] blocks each
    std::unique_ptr<ExpertCacheBook> book;
    std::vector<uint64_t> ticket;  // [local] load in flight (0: none)
  };

  std::unique_ptr<ExpertCacheBook> make_book(std::size_t layer, const std::string& policy) const;
  std::vector<LoadSegment> segments(const Layer& layer, int64_t x, int64_t slot) const;
  void wait_loads(Layer& layer);

  CachedExpertStoreOptions options_;
  std::vector<Layer> layers_;
  int64_t hidden_ = 0;
  ActivationKind activation_ = ActivationKind::swiglu;
  std::size_t bytes_ = 0;
  std::unique_ptr<ExpertLoader> loader_;  // last member: its thread stops before the slots go
};

// Belady's future for one layer on one rank: for each batch-loop step, the local experts (indices
// into `local`) that the trace says are routed rows in any of the step's global batches
// (`step_batches[s]`, -1 for an idle dp group).
RequestSteps local_request_steps(const RoutingTrace& trace, int64_t layer, const std::vector<LocalExpert>& local,
                                 const std::vector<std::vector<int64_t>>& step_batches);

}  // namespace moe
