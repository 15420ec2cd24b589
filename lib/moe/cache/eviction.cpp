#include "moe/cache/eviction.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "core/error.hpp"

namespace moe {

namespace {

// Huang et al.'s policy: evict an expert that is inactive in this step if there is one, else any;
// among the candidates the one loaded last (last in, first out). Experts run in ascending id, so
// an active expert loaded last in this step has already been computed.
class LifoPolicy final : public EvictionPolicy {
 public:
  explicit LifoPolicy(int64_t num_experts)
      : loaded_at_(static_cast<std::size_t>(num_experts), 0), active_(static_cast<std::size_t>(num_experts), 0) {}
  const char* name() const override { return "lifo"; }
  void begin_step(const std::vector<int32_t>& active) override {
    std::fill(active_.begin(), active_.end(), 0);
    for (int32_t e : active) active_[static_cast<std::size_t>(e)] = 1;
  }
  void requested(int32_t e, bool hit) override {
    if (!hit) loaded_at_[static_cast<std::size_t>(e)] = ++clock_;
  }
  int32_t victim(const std::vector<int32_t>& resident) const override {
    int32_t best = -1;
    bool best_inactive = false;
    for (int32_t e : resident) {
      const bool inactive = active_[static_cast<std::size_t>(e)] == 0;
      if (best < 0 || (inactive && !best_inactive) ||
          (inactive == best_inactive &&
           loaded_at_[static_cast<std::size_t>(e)] > loaded_at_[static_cast<std::size_t>(best)])) {
        best = e;
        best_inactive = inactive;
      }
    }
    return best;
  }
  void evicted(int32_t) override {}

 private:
  std::vector<uint64_t> loaded_at_;  // request clock of each expert's last load
  std::vector<char> active_;
  uint64_t clock_ = 0;
};

// Least recently used: the resident expert whose last request is oldest.
class LruPolicy final : public EvictionPolicy {
 public:
  explicit LruPolicy(int64_t num_experts) : used_at_(static_cast<std::size_t>(num_experts), 0) {}
  const char* name() const override { return "lru"; }
  void begin_step(const std::vector<int32_t>&) override {}
  void requested(int32_t e, bool) override { used_at_[static_cast<std::size_t>(e)] = ++clock_; }
  int32_t victim(const std::vector<int32_t>& resident) const override {
    return *std::min_element(resident.begin(), resident.end(), [&](int32_t a, int32_t b) {
      return used_at_[static_cast<std::size_t>(a)] < used_at_[static_cast<std::size_t>(b)];
    });
  }
  void evicted(int32_t) override {}

 private:
  std::vector<uint64_t> used_at_;
  uint64_t clock_ = 0;
};

// Belady's MIN: evicts the resident expert whose next request lies furthest ahead (never
// requested again: furthest of all). Optimal for a known request sequence; here the sequence
// is the steps of a trace, each step's experts in ascending id.
class BeladyPolicy final : public EvictionPolicy {
 public:
  BeladyPolicy(int64_t num_experts, RequestSteps future) : e_(num_experts), future_(std::move(future)) {
    const RequestSteps& steps = future_;
    // next_step_[s * E + e]: first step >= s in which e is active (num_steps: never).
    const std::size_t n = steps.size();
    next_step_.assign((n + 1) * static_cast<std::size_t>(e_), static_cast<int64_t>(n));
    for (std::size_t s = n; s-- > 0;) {
      std::copy_n(next_step_.begin() + static_cast<std::ptrdiff_t>((s + 1) * static_cast<std::size_t>(e_)), e_,
                  next_step_.begin() + static_cast<std::ptrdiff_t>(s * static_cast<std::size_t>(e_)));
      for (int32_t e : steps[s]) {
        MOE_CHECK(e >= 0 && e < e_, "belady: expert {} of step {} is outside [0, {})", e, s, e_);
        next_step_[s * static_cast<std::size_t>(e_) + static_cast<std::size_t>(e)] = static_cast<int64_t>(s);
      }
    }
  }
  const char* name() const override { return "belady"; }
  void begin_step(const std::vector<int32_t>& active) override {
    ++step_;
    MOE_CHECK(step_ < static_cast<int64_t>(future_.size()) && active == future_[static_cast<std::size_t>(step_)],
              "belady: step {} differs from the trace it was planned with", step_);
  }
  void requested(int32_t e, bool) override { current_ = e; }
  int32_t victim(const std::vector<int32_t>& resident) const override {
    int32_t best = resident.front();
    int64_t best_next = -1;
    for (int32_t e : resident) {
      const int64_t next = next_request(e);
      if (next > best_next) {
        best = e;
        best_next = next;
      }
    }
    return best;
  }
  void evicted(int32_t) override {}

 private:
  // Position of e's next request as step * E + e (ids ascend inside a step).
  int64_t next_request(int32_t e) const {
    int64_t s = step_;
    if (e <= current_) ++s;  // this step's request of e is done (or is the one being served)
    const int64_t n = static_cast<int64_t>(future_.size());
    if (s < n) s = next_step_[static_cast<std::size_t>(s * e_ + e)];
    return s >= n ? std::numeric_limits<int64_t>::max() : s * e_ + e;
  }

  int64_t e_;
  RequestSteps future_;  // a copy: the policy outlives the trace it was read from
  std::vector<int64_t> next_step_;
  int64_t step_ = -1;
  int32_t current_ = -1;
};

}  // namespace

const std::vector<std::string>& eviction_policy_names() {
  static const std::vector<std::string> names = {"lifo", "lru", "belady"};
  return names;
}

std::unique_ptr<EvictionPolicy> make_eviction_policy(const std::string& name, int64_t num_experts,
                                                     const RequestSteps* future) {
  MOE_CHECK(num_experts > 0, "expert cache: a layer needs experts, got {}", num_experts);
  if (name == "lifo") return std::make_unique<LifoPolicy>(num_experts);
  if (name == "lru") return std::make_unique<LruPolicy>(num_experts);
  if (name == "belady") {
    MOE_CHECK(future != nullptr, "expert cache: policy 'belady' needs a routing trace of an earlier run (moe.trace)");
    return std::make_unique<BeladyPolicy>(num_experts, *future);
  }
  fail("expert cache: unknown policy '{}' (valid: lifo, lru, belady)", name);
}

}  // namespace moe
