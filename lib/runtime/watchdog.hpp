#pragma once
// A thread per rank that ends the job when the rank stops making progress, and that makes a stop
// signal effective at any point. Both cases exit the process directly (_exit): the main thread is
// blocked (in a collective a stopped or hung peer never joins, in a long layer, in open() of a
// slow device) and cannot unwind, and the launcher (mpirun, srun) ends the other ranks when one
// exits without MPI_Finalize.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace moe {

// Exit code of a rank that the watchdog ended (no progress for watchdog_seconds): an error.
inline constexpr int kWatchdogExitCode = 1;
// Seconds a stop signal may wait for the batch loop's own safe point (between layers, between
// steps) before the watchdog ends the process with kStoppedExitCode.
inline constexpr double kStopGraceSeconds = 5.0;

class Watchdog {
 public:
  // `timeout_seconds` = 0: no progress timeout (stop signals are still made effective).
  Watchdog(std::string program, int rank, double timeout_seconds, double stop_grace_seconds = kStopGraceSeconds);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts the progress timeout from now (before, loading and validation are not timed).
  void arm();
  // Progress: a layer or a step finished.
  void beat();
  // The main thread has seen the stop signal and is stopping at a safe point: leave it be.
  void stop_acknowledged();

 private:
  void run();

  const std::string program_;
  const int rank_;
  const double timeout_;
  const double stop_grace_;
  std::atomic<double> last_beat_;
  std::atomic<bool> armed_{false};
  std::atomic<bool> stop_acknowledged_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace moe
