#pragma once
// The run file (YAML) with --set overrides: the contract job scripts rely on (DESIGN.md).
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

enum class GatingKind { dynamic, static_capacity };
enum class AllToAllKind { flat, hierarchical };
// What a non-finite value in a layer's output does: end the run naming the layer and batch, or
// give the affected sequences NaN scores, list them in the report and carry on.
enum class NonFiniteAction { stop, mark };

struct RunConfig {
  std::string model;
  std::string input;
  std::string output;
  std::string report;              // "" = no JSON report
  int64_t batch_size = 8;          // sequences per data-parallel group per step
  std::string backend = "cpu";     // cpu | cuda
  int64_t threads = 0;             // OpenMP threads per rank; 0 = OMP_NUM_THREADS or all cores
  double progress_seconds = 10.0;  // rank 0 prints progress at most this often; 0 = never
  double watchdog_seconds = 600;   // a rank that makes no progress this long ends the job; 0 = never
  bool mmap_weights = false;       // CPU: use weights in place in the mapped checkpoint (io/mapped_file.hpp)
  NonFiniteAction on_nonfinite = NonFiniteAction::stop;
  struct {
    int64_t tp = 1;
    int64_t ranks_per_node = 0;  // 0 = auto (MPI_COMM_TYPE_SHARED)
  } parallel;
  struct {
    GatingKind gating = GatingKind::dynamic;
    double capacity_factor = 1.25;
    AllToAllKind alltoall = AllToAllKind::hierarchical;
    int64_t dispatch_chunks = 2;  // micro-batches per exchange, overlapping the all-to-all (moe/dispatcher.hpp)
    std::string placement;        // "" = contiguous default; else a placement file (docs/formats.md)
    bool trace = false;           // write the routing trace into the results file (docs/formats.md)
    bool trace_topk = false;      // ... with every token's top-k expert ids
    struct {
      std::string slots = "all";    // experts resident per MoE layer per rank: all | N | P% of the layer's
      std::string policy = "lifo";  // lifo | lru | belady
      std::string trace;            // belady: a results file with the routing trace of the same input
    } expert_cache;
  } moe;
  std::string effective_yaml;  // the run file after overrides, as YAML text (stored in results)

  // Reads `path`, applies overrides of the form key.sub=value, validates every key and value.
  static RunConfig load(const std::string& path, const std::vector<std::string>& overrides);
  static RunConfig parse(const std::string& yaml_text, const std::string& source,
                         const std::vector<std::string>& overrides);
};

// moe.expert_cache.slots parsed: all, a count, or a percentage of each layer's experts.
struct CacheSlots {
  bool all = true;
  int64_t count = 0;     // when > 0
  double percent = 0.0;  // when count == 0 and !all
};
// Throws "<what> is '<text>': ..." unless text is all, an integer >= 1 or a percentage in (0, 100].
CacheSlots parse_cache_slots(const std::string& text, const std::string& what);

const char* gating_name(GatingKind g);
const char* alltoall_name(AllToAllKind a);

}  // namespace moe
