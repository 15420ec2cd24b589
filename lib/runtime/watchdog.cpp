#include "runtime/watchdog.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "core/timer.hpp"
#include "runtime/signals.hpp"

namespace moe {

namespace {
constexpr auto kPoll = std::chrono::milliseconds(200);

[[noreturn]] void end_process(const std::string& line, int code) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  _exit(code);
}
}  // namespace

Watchdog::Watchdog(std::string program, int rank, double timeout_seconds, double stop_grace_seconds)
    : program_(std::move(program)),
      rank_(rank),
      timeout_(timeout_seconds),
      stop_grace_(stop_grace_seconds),
      last_beat_(now_seconds()),
      thread_([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::arm() {
  last_beat_ = now_seconds();
  armed_ = true;
}

void Watchdog::beat() {
  last_beat_ = now_seconds();
}

void Watchdog::stop_acknowledged() {
  stop_acknowledged_ = true;
}

void Watchdog::run() {
  double stop_seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, kPoll, [this] { return quit_; })) {
    const double now = now_seconds();
    if (const int signal = stop_signal_received(); signal != 0 && !stop_acknowledged_) {
      if (stop_seen == 0) stop_seen = now;
      if (now - stop_seen > stop_grace_)
        end_process(fmt::format("{}: stopped by signal {} on rank {} at a point where it could not finish the step in "
                                "flight within {:.0f} s; that step is not saved: run again with --resume",
                                program_, signal, rank_, stop_grace_),
                    kStoppedExitCode);
    }
    if (armed_ && timeout_ > 0 && now - last_beat_ > timeout_)
      end_process(
          fmt::format("{}: error: rank {} made no progress for {:.0f} s (watchdog_seconds; a rank stopped, hung "
                      "or too slow?): ending the job",
                      program_, rank_, now - last_beat_.load()),
          kWatchdogExitCode);
  }
}

}  // namespace moe
