// What decides what a resumed run does: BatchSchedule (which global batch each rank runs at each
// step, skipping the journal's done batches) and run_fingerprint (which run-file changes make an
// output another run's).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "config/run_fingerprint.hpp"
#include "runtime/batch_schedule.hpp"

namespace moe::test {
namespace {

// All (step, slot) -> batch of a schedule, -1 for idle slots.
std::vector<std::vector<int64_t>> table(const BatchSchedule& s, int64_t slots) {
  std::vector<std::vector<int64_t>> rows;
  for (int64_t step = 0; step < s.num_steps(); ++step) {
    rows.emplace_back();
    for (int64_t slot = 0; slot < slots; ++slot) rows.back().push_back(s.batch(step, slot));
  }
  return rows;
}

TEST(BatchSchedule, FreshRunIsRoundRobinOverRanks) {
  const BatchSchedule s(std::vector<int32_t>(7, 0), 3);
  EXPECT_EQ(s.num_steps(), 3);
  EXPECT_EQ(s.num_done_before(), 0);
  EXPECT_EQ(table(s, 3), (std::vector<std::vector<int64_t>>{{0, 1, 2}, {3, 4, 5}, {6, -1, -1}}));
}

TEST(BatchSchedule, DoneBatchesAreSkippedAndTheRestDealtInOrder) {
  const BatchSchedule s({1, 1, 0, 1, 0, 0, 0}, 2);
  EXPECT_EQ(s.num_done_before(), 3);
  EXPECT_EQ(s.num_pending(), 4);
  EXPECT_EQ(table(s, 2), (std::vector<std::vector<int64_t>>{{2, 4}, {5, 6}}));
}

TEST(BatchSchedule, CompleteJournalHasNoSteps) {
  const BatchSchedule s(std::vector<int32_t>(5, 1), 4);
  EXPECT_EQ(s.num_steps(), 0);
  EXPECT_EQ(s.batch(0, 0), -1);
}

std::string fingerprint(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return run_fingerprint(RunConfig::parse(yaml, "run.yaml", overrides));
}

constexpr const char* kRun = "model: m.h5\ninput: t.h5\noutput: s.h5\nbatch_size: 4\nmoe:\n  gating: dynamic\n";

TEST(RunFingerprint, FilesAndPrintingDoNotCount) {
  const std::string base = fingerprint(kRun);
  EXPECT_EQ(base, fingerprint(kRun, {"output=other.h5", "report=r.json", "progress_seconds=1"}));
  EXPECT_EQ(base, fingerprint(kRun, {"model=elsewhere/m.h5", "input=elsewhere/t.h5"}));  // checksums cover them
  EXPECT_EQ(base, fingerprint("moe:\n  gating: dynamic\nbatch_size: 4\noutput: s.h5\ninput: t.h5\nmodel: m.h5\n"));
}

TEST(RunFingerprint, WhatChangesResultsCounts) {
  const std::string base = fingerprint(kRun);
  for (const char* change : {"batch_size=8", "moe.gating=static", "moe.capacity_factor=2", "parallel.tp=2",
                             "moe.alltoall=flat", "moe.dispatch_chunks=3", "threads=2", "backend=cuda"})
    EXPECT_NE(base, fingerprint(kRun, {change})) << change;
}

}  // namespace
}  // namespace moe::test
