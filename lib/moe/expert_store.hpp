#pragma once
// The only way to reach expert weights. A layer leases the experts it computes with and holds the
// leases for one grouped GEMM; a lease stays valid until released (its destructor), so a store may
// keep all local experts resident (ResidentExpertStore) or a bounded cache of them that never
// evicts a leased expert (expert buffering) without changing callers. prefetch() is told, once
// per layer and batch, which local experts will be leased (the dispatcher knows after its count
// exchange), so a cache can start loading them while the rows travel.
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "io/checkpoint.hpp"
#include "moe/cache/cache_book.hpp"
#include "moe/placement.hpp"

namespace moe {

// One expert's MLP: in [mlp_in_rows(F), d] (gate rows then up rows for swiglu), out [d, F], with F
// the FFN columns this rank holds (expert_ffn, or its slice). A swiglu expert used in place in a
// mapped checkpoint (io/mapped_file.hpp) has its gate and up rows in two datasets: then `in`
// holds only the gate rows [F, d] and `up` the up rows [F, d] (up.data is null otherwise).
struct ExpertWeights {
  WeightView in;
  WeightView up;
  WeightView out;
  int64_t ffn() const { return out.cols; }
  bool split_gate_up() const { return up.data != nullptr; }
};

// One MoE layer's bounded cache on this rank (zeros where the rank holds none of its experts).
struct ExpertCacheLayerStats {
  int64_t layer = 0;
  int64_t slots = 0;
  ExpertCacheStats stats;
  uint64_t resident_bytes = 0;  // the slots' backend memory
};

struct ExpertStoreStats {
  uint64_t leases = 0;
  uint64_t misses = 0;  // leases that had to load the expert
};

class ExpertStore;

// Move-only; releases its expert when destroyed (never throws).
class ExpertLease {
 public:
  ExpertLease() = default;
  ExpertLease(ExpertStore* store, int64_t layer, int64_t expert, ExpertWeights weights)
      : store_(store), layer_(layer), expert_(expert), weights_(weights) {}
  ExpertLease(ExpertLease&& o) noexcept { *this = std::move(o); }
  ExpertLease& operator=(ExpertLease&& o) noexcept;
  ExpertLease(const ExpertLease&) = delete;
  ExpertLease& operator=(const ExpertLease&) = delete;
  ~ExpertLease() { release(); }

  void release() noexcept;
  const ExpertWeights& weights() const { return weights_; }
  int64_t expert() const { return expert_; }

 private:
  ExpertStore* store_ = nullptr;
  int64_t layer_ = 0;
  int64_t expert_ = 0;
  ExpertWeights weights_;
};

class ExpertStore {
 public:
  virtual ~ExpertStore() = default;
  // Global expert `expert` of `layer`, which this rank holds (the placement table's local experts).
  virtual ExpertLease lease(int64_t layer, int64_t expert) = 0;
  // The local experts of `layer` that the next leases will ask for (compute order). Default: nothing.
  virtual void prefetch(int64_t /*layer*/, const std::vector<int64_t>& /*experts*/) {}
  // Expert weight bytes held: in backend memory or in place in the mapped checkpoint.
  virtual std::size_t resident_bytes() const = 0;
  // Of which in place in the mapped checkpoint (the page cache, shared by the ranks of a node).
  virtual std::size_t mapped_bytes() const { return 0; }
  // FFN columns this rank holds of `expert` (sizes the GEMM buffers before any lease).
  virtual int64_t expert_ffn(int64_t layer, int64_t expert) const = 0;
  // How many experts of `layer` may be leased at once (a bounded cache: its slots).
  virtual int64_t lease_capacity(int64_t /*layer*/) const { return INT64_MAX; }
  // The batch loop starts (after the warm-up batch): a cache forgets the warm-up's requests.
  virtual void begin_run() {}
  // Per MoE layer, the cache's figures; empty for a store without a cache.
  virtual std::vector<ExpertCacheLayerStats> cache_stats() const { return {}; }
  // Leases handed out and not yet released.
  int64_t outstanding_leases() const { return outstanding_; }
  const ExpertStoreStats& stats() const { return stats_; }

 protected:
  friend class ExpertLease;
  // Called once per lease when it is released; must not throw.
  virtual void release(int64_t /*layer*/, int64_t /*expert*/) noexcept {}
  ExpertLease make_lease(int64_t layer, int64_t expert, ExpertWeights weights) {
    ++stats_.leases;
    ++outstanding_;
    return ExpertLease(this, layer, expert, weights);
  }

  ExpertStoreStats stats_;
  int64_t outstanding_ = 0;
};

// Reads the local experts of every MoE layer (placement.local_experts(layer, rank)) into backend
// memory at start-up, packed per layer in compute order, each with only its FFN columns; or, with
// the checkpoint mapped (CheckpointReader::map_weights) and a backend that reads host weights in
// place, uses every expert whose boxes lie in place there (whole experts: expert slicing's column
// slices of down_proj do not) without a copy.
class ResidentExpertStore final : public ExpertStore {
 public:
  ResidentExpertStore(CheckpointReader& ckpt, Backend& backend, const ExpertPlacement& placement, int rank);
  ExpertLease lease(int64_t layer, int64_t expert) override;
  std::size_t resident_bytes() const override { return bytes_ + mapped_bytes_; }
  std::size_t mapped_bytes() const override { return mapped_bytes_; }
  int64_t expert_ffn(int64_t layer, int64_t expert) const override;

 private:
  struct Local {
    int64_t ffn = 0;     // F: columns held
    std::size_t in = 0;  // byte offsets of its blocks in the layer's buffers
    std::size_t out = 0;
    // In place in the mapped checkpoint instead (gate null for gelu); null when copied.
    const void* gate_at = nullptr;
    const void* up_at = nullptr;
    const void* down_at = nullptr;
  };
  struct Layer {
    std::vector<int64_t> local_of;  // [E] index into experts, -1 if not held
    std::vector<Local> experts;     // compute order
    DeviceBuffer in;                // packed [mlp_in_rows(F), d] blocks
    DeviceBuffer out;               // packed [d, F] blocks
    DType dtype = DType::f32;
  };
  std::vector<Layer> layers_;
  int64_t hidden_ = 0;
  ActivationKind activation_ = ActivationKind::swiglu;
  std::size_t bytes_ = 0;
  std::size_t mapped_bytes_ = 0;
  std::shared_ptr<const MappedFile> mapped_;  // held while views point into it
};

}  // namespace moe
