// Rank 0's progress lines (runtime/progress.hpp) when the output is not a terminal: batches,
// tokens, tokens/s and ETA, at most once per interval, nothing when disabled.
#include "runtime/progress.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace moe::test {
namespace {

using testing::HasSubstr;
using testing::MatchesRegex;

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;) text += static_cast<char>(c);
  return text;
}

TEST(Progress, LineHasBatchesTokensRateAndEta) {
  std::FILE* out = std::tmpfile();
  Progress progress({10, 1000}, {4, 400}, 1e-9, true, out);  // a resumed run: 4 batches done before
  progress.update({7, 700});
  progress.finish({7, 700});  // prints nothing more when not a terminal
  const std::string text = contents(out);
  EXPECT_THAT(text, MatchesRegex("progress: 70\\.0%  batches 7/10  tokens 700/1000  [0-9]+ tok/s  ETA [0-9hms]+\n"));
  std::fclose(out);
}

TEST(Progress, AtMostOneLinePerInterval) {
  std::FILE* out = std::tmpfile();
  Progress progress({10, 1000}, {0, 0}, 3600, true, out);
  for (int b = 1; b <= 10; ++b) progress.update({b, 100 * b});
  EXPECT_EQ(contents(out), "");
  std::fclose(out);
}

TEST(Progress, DisabledPrintsNothing) {
  std::FILE* out = std::tmpfile();
  Progress progress({10, 1000}, {0, 0}, 1e-9, false, out);
  progress.update({5, 500});
  EXPECT_EQ(contents(out), "");
  std::fclose(out);
}

}  // namespace
}  // namespace moe::test
