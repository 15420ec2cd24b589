#include "runtime/progress.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include "core/timer.hpp"

namespace moe {

Progress::Progress(int64_t total_steps, int64_t total_tokens, double interval_seconds, bool enabled, std::FILE* out)
    : total_steps_(total_steps),
      total_tokens_(total_tokens),
      interval_(interval_seconds),
      enabled_(enabled && interval_seconds > 0),
      tty_(isatty(fileno(out)) != 0),
      out_(out),
      start_(now_seconds()),
      last_(start_) {}

void Progress::update(int64_t steps_done, int64_t tokens_done) {
  if (!enabled_) return;
  const double now = now_seconds();
  if (tty_ && steps_done == total_steps_) return;  // finish() draws the completed bar once
  if (now - last_ < (tty_ ? 0.2 : interval_)) return;
  last_ = now;
  print(steps_done, tokens_done, now, false);
}

void Progress::finish(int64_t tokens_done) {
  if (enabled_ && tty_) print(total_steps_, tokens_done, now_seconds(), true);
}

void Progress::print(int64_t steps_done, int64_t tokens_done, double now, bool final) {
  const double elapsed = now - start_;
  const double rate = elapsed > 0 ? static_cast<double>(tokens_done) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_tokens_ - tokens_done) / rate : 0.0;
  const double pct = total_tokens_ > 0 ? 100.0 * static_cast<double>(tokens_done) / static_cast<double>(total_tokens_) : 100.0;
  const std::string text = fmt::format("step {}/{}  tokens {}/{}  {:.0f} tok/s  ETA {:.0f} s", steps_done,
                                       total_steps_, tokens_done, total_tokens_, rate, eta);
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
