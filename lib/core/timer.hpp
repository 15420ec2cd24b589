#pragma once
// Wall-clock timers accumulated per named phase; the run report prints them.
#include <chrono>
#include <map>
#include <string>

namespace moe {

class PhaseTimes {
 public:
  void add(const std::string& phase, double seconds) { seconds_[phase] += seconds; }
  const std::map<std::string, double>& seconds() const { return seconds_; }

 private:
  std::map<std::string, double> seconds_;
};

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Adds the time between construction and destruction to one phase.
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimes* times, const char* phase) : times_(times), phase_(phase), start_(now_seconds()) {}
  ~ScopedPhase() {
    if (times_) times_->add(phase_, now_seconds() - start_);
  }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  PhaseTimes* times_;
  const char* phase_;
  double start_;
};

}  // namespace moe
