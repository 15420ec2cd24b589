#include "runtime/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>

#include "core/timer.hpp"

namespace moe {

namespace {

// 42 s, 3m07s, 2h05m: readable at a glance in a job log.
std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

// A bar only for a person watching a terminal. OpenMPI hands its ranks a pseudo-terminal even when
// mpirun's own output goes to a file, so under mpirun the bar would fill job logs: lines there.
bool draws_bar(std::FILE* out) {
  return isatty(fileno(out)) != 0 && std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr;
}

}  // namespace

Progress::Progress(ProgressTotals total, ProgressTotals done_before, double interval_seconds, bool enabled,
                   std::FILE* out)
    : total_(total),
      before_(done_before),
      interval_(interval_seconds),
      enabled_(enabled && interval_seconds > 0),
      tty_(draws_bar(out)),
      out_(out),
      start_(now_seconds()),
      last_(start_) {}

void Progress::update(ProgressTotals done) {
  if (!enabled_) return;
  const double now = now_seconds();
  if (tty_ && done.batches == total_.batches) return;  // finish() draws the completed bar once
  if (now - last_ < (tty_ ? 0.2 : interval_)) return;
  last_ = now;
  print(done, now, false);
}

void Progress::finish(ProgressTotals done) {
  if (enabled_ && tty_) print(done, now_seconds(), true);
}

void Progress::print(ProgressTotals done, double now, bool final) {
  const double elapsed = now - start_;
  const double scored = static_cast<double>(done.tokens - before_.tokens);
  const double rate = elapsed > 0 ? scored / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_.tokens - done.tokens) / rate : 0.0;
  const double pct =
      total_.tokens > 0 ? 100.0 * static_cast<double>(done.tokens) / static_cast<double>(total_.tokens) : 100.0;
  const std::string text = fmt::format("batches {}/{}  tokens {}/{}  {:.0f} tok/s  ETA {}", done.batches,
                                       total_.batches, done.tokens, total_.tokens, rate, duration_text(eta));
  if (tty_) {
    const int width = 30;
    const int filled = static_cast<int>(pct / 100.0 * width);
    fmt::print(out_, "\r[{}{}] {:5.1f}%  {}{}", std::string(filled, '#'), std::string(width - filled, ' '), pct, text,
               final ? "\n" : "");
  } else {
    fmt::print(out_, "progress: {:.1f}%  {}\n", pct, text);
  }
  std::fflush(out_);
}

}  // namespace moe
