// The watchdog (runtime/watchdog.hpp) in a forked child, as it ends its process: no progress for
// the timeout ends it with kWatchdogExitCode and one line; a stop signal that the main thread
// does not reach a safe point for ends it with kStoppedExitCode after the grace period; progress
// and an acknowledged stop keep it alive.
#include "runtime/watchdog.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <thread>

#include "runtime/signals.hpp"

namespace moe::test {
namespace {

struct ChildResult {
  int exit_code = -1;
  double seconds = 0;
};

// Runs fn in a forked child; the child exits 0 when fn returns.
ChildResult in_child(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    fn();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

TEST(Watchdog, NoProgressEndsTheProcess) {
  const ChildResult r = in_child([] {
    Watchdog w("test", 0, 0.5);
    w.arm();
    std::this_thread::sleep_for(std::chrono::seconds(20));
  });
  EXPECT_EQ(r.exit_code, kWatchdogExitCode);
  EXPECT_LT(r.seconds, 5);
}

TEST(Watchdog, ProgressUnarmedOrDisabledKeepsItAlive) {
  EXPECT_EQ(in_child([] {
              Watchdog w("test", 0, 0.5);
              w.arm();
              for (int i = 0; i < 15; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                w.beat();
              }
            }).exit_code,
            0);
  EXPECT_EQ(in_child([] {
              Watchdog w("test", 0, 0.3);  // not armed: loading and validation are not timed
              std::this_thread::sleep_for(std::chrono::seconds(1));
            }).exit_code,
            0);
  EXPECT_EQ(in_child([] {
              Watchdog w("test", 0, 0);  // watchdog_seconds: 0
              w.arm();
              std::this_thread::sleep_for(std::chrono::seconds(1));
            }).exit_code,
            0);
}

TEST(Watchdog, StopSignalIsHonouredWithinTheGracePeriodAnywhere) {
  const ChildResult r = in_child([] {
    install_stop_handlers();
    Watchdog w("test", 0, 0, 1.0);
    raise(SIGTERM);
    std::this_thread::sleep_for(std::chrono::seconds(20));  // a blocked open(), a long layer
  });
  EXPECT_EQ(r.exit_code, kStoppedExitCode);
  EXPECT_LT(r.seconds, 5);
  EXPECT_EQ(in_child([] {
              install_stop_handlers();
              Watchdog w("test", 0, 0, 0.3);
              raise(SIGTERM);
              w.stop_acknowledged();  // the loop reached its safe point and stops by itself
              std::this_thread::sleep_for(std::chrono::seconds(1));
            }).exit_code,
            0);
}

}  // namespace
}  // namespace moe::test
