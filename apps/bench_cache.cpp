#include "bench_cache.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "config/run_config.hpp"
#include "core/error.hpp"
#include "io/output_file.hpp"
#include "io/trace_reader.hpp"
#include "moe/cache/cache_book.hpp"
#include "moe/cache/cache_settings.hpp"
#include "moe/cache/eviction.hpp"

namespace moe {

namespace {

// One cache: a layer's experts [first, first + count) on one rank, and the steps it sees.
struct CacheStream {
  int64_t layer = 0;
  int64_t num_experts = 0;
  RequestSteps steps;  // local ids
};

std::vector<CacheStream> cache_streams(const RoutingTrace& trace, int64_t ranks) {
  std::vector<CacheStream> out;
  for (const TraceLayer& layer : trace.layers) {
    const int64_t e = layer.num_experts;
    MOE_CHECK(ranks <= e, "--ranks {}: more ranks than the {} experts of MoE layer {}", ranks, e, layer.layer);
    for (int64_t r = 0; r < ranks; ++r) {
      // ExpertPlacement's contiguous ranges.
      const int64_t first = r * e / ranks, end = (r + 1) * e / ranks;
      CacheStream s{layer.layer, end - first, {}};
      for (const auto& active : layer.active_steps()) {
        std::vector<int32_t> local;
        for (int32_t x : active)
          if (x >= first && x < end) local.push_back(static_cast<int32_t>(x - first));
        s.steps.push_back(std::move(local));
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace

void bench_cache(const CacheBenchOptions& o, const std::string& command) {
  int ranks_running = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks_running);
  MOE_CHECK(ranks_running == 1,
            "cache: replays a trace on one process; run it without mpirun (--ranks {} sets the "
            "expert-parallel ranks it models)",
            o.ranks);
  MOE_CHECK(o.ranks >= 1, "--ranks must be >= 1, got {}", o.ranks);
  MOE_CHECK(!o.trace.empty(), "cache: --trace is required (a results file of moe-score with moe.trace: true)");
  const auto& valid = eviction_policy_names();
  for (const std::string& p : o.policies)
    MOE_CHECK(std::find(valid.begin(), valid.end(), p) != valid.end(),
              "--policies: unknown policy '{}' (valid: lifo, lru, belady)", p);
  // The CSV goes to CSV.partial and is renamed when complete; a file there that is not an earlier
  // table of ours is refused before any work (io/output_file.hpp).
  std::optional<StagedOutput> csv_out;
  if (!o.csv.empty())
    csv_out.emplace("--csv", o.csv, OutputKind::cache_table, NamedPaths{{"--trace", o.trace}},
                    StagedOutput::Options{o.force, false});
  if (csv_out && !csv_out->note().empty()) fmt::print("# --csv: {}\n", csv_out->note());
  const RoutingTrace trace = read_routing_trace(o.trace);
  const std::vector<CacheStream> streams = cache_streams(trace, o.ranks);
  std::vector<CacheSlots> sizes;
  for (const std::string& text : o.slots) {
    const CacheSlots s = parse_cache_slots(text, "--slots");  // "--slots is '0': ..."
    for (const CacheStream& c : streams)
      MOE_CHECK(cache_slots_for(s, c.num_experts) <= c.num_experts,
                "--slots {}: more than the {} experts a rank holds of MoE layer {}", text, c.num_experts, c.layer);
    sizes.push_back(s);
  }

  std::string layers;
  for (const TraceLayer& l : trace.layers) layers += fmt::format("{}{}", layers.empty() ? "" : ", ", l.num_experts);
  fmt::print("# {}\n", command);
  fmt::print("# trace {}: {} batches of {} sequences, {} MoE layers (experts {}), {} expert-parallel rank(s)\n",
             o.trace, trace.batch_ids.size(), trace.batch_size, trace.layers.size(), layers, o.ranks);
  fmt::print("# one cache per MoE layer per rank; requests: each batch's active experts (rows > 0), ascending\n");
  fmt::print("# miss rate = misses / requests over all caches; gap = miss rate / belady's - 1\n");
  std::string header = fmt::format("{:>8} {:>6} |", "slots", "share");
  for (const std::string& p : o.policies) header += fmt::format(" {:>8}", p);
  header += " |";
  for (const std::string& p : o.policies)
    if (p != "belady") header += fmt::format(" {:>11}", p + " gap");
  fmt::print("{}\n", header);

  std::string csv = std::string(kCacheTableCsvHeader) + "\n";
  // Belady is every gap's reference: it runs even when not listed.
  std::vector<std::string> run = o.policies;
  if (std::find(run.begin(), run.end(), "belady") == run.end()) run.push_back("belady");
  std::vector<std::pair<std::string, double>> lifo_gap;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::map<std::string, ExpertCacheStats> total;
    int64_t slot_sum = 0, expert_sum = 0;
    for (const CacheStream& c : streams) {
      const int64_t slots = cache_slots_for(sizes[i], c.num_experts);
      slot_sum += slots;
      expert_sum += c.num_experts;
      for (const std::string& p : run) {
        const ExpertCacheStats s = replay_cache(c.steps, c.num_experts, slots, p);
        total[p].hits += s.hits;
        total[p].misses += s.misses;
      }
    }
    const double belady = total["belady"].miss_rate();
    const double share = static_cast<double>(slot_sum) / static_cast<double>(expert_sum);
    std::string row = fmt::format("{:>8} {:>5.1f}% |", o.slots[i], 100.0 * share);
    for (const std::string& p : o.policies) row += fmt::format(" {:>8.4f}", total[p].miss_rate());
    row += " |";
    for (const std::string& p : o.policies) {
      const double gap = belady > 0 ? total[p].miss_rate() / belady - 1.0 : 0.0;
      if (p != "belady") row += fmt::format(" {:>10.1f}%", 100.0 * gap);
      if (p == "lifo") lifo_gap.emplace_back(o.slots[i], gap);
      csv += fmt::format("{},{:.6f},{},{},{},{:.6f},{:.6f}\n", o.slots[i], share, p, total[p].hits + total[p].misses,
                         total[p].misses, total[p].miss_rate(), gap);
    }
    fmt::print("{}\n", row);
  }
  std::string perf = "PERFORMANCE cache";
  for (const auto& [slots, gap] : lifo_gap) perf += fmt::format(" lifo_gap_at_{}={:.1f}%", slots, 100.0 * gap);
  fmt::print("{}\n", perf);
  if (csv_out) write_text_output(*csv_out, csv);
}

}  // namespace moe
