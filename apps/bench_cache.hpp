#pragma once
// moe-bench cache: replays a recorded routing trace (moe.trace) through each eviction policy and
// cache size and prints Huang et al.'s table: miss rate per policy and size, and each policy's
// gap to Belady's MIN (the optimum for the trace). Pure bookkeeping: no weights move.
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct CacheBenchOptions {
  std::string trace;                                                // a results file written with moe.trace: true
  std::vector<std::string> slots = {"12.5%", "25%", "50%", "75%"};  // per cache: N or P% of its experts
  std::vector<std::string> policies = {"lifo", "lru", "belady"};
  int64_t ranks = 1;  // expert-parallel ranks: each holds a contiguous range of every layer's experts and its own cache
  std::string csv;    // also write the table as CSV (scripts/plot_cache.py draws it)
  bool force = false;  // replace whatever file is at csv (else only an earlier CSV table of ours)
};

// Runs on one process; prints the table and a PERFORMANCE line. Bad options throw one line.
void bench_cache(const CacheBenchOptions& options, const std::string& command);

}  // namespace moe
