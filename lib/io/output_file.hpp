#pragma once
// Safe outputs (README "Outputs and exit codes"): every program writes each output under
// PATH.partial in the same folder and renames it to PATH only when it is complete, holds an
// exclusive lock (flock on PATH.lock) while it writes, and refuses, before any work, an output
// that is one of its inputs or that would replace a file which is not its own kind of output.
// It never removes or truncates a file it did not create, apart from replacing its own kind of
// output (or anything, with --force) at the final rename.
#include <string>
#include <utility>
#include <vector>

namespace moe {

// What an existing file at an output path must be for a run to replace it without --force.
enum class OutputKind { checkpoint, tokens, results, report, placement, cache_table, place_loads };

// The first line of moe-bench cache's CSV table (what makes an existing file one of ours).
inline constexpr char kCacheTableCsvHeader[] = "slots,share,policy,requests,misses,miss_rate,gap_to_belady";
// The "format" of moe-bench place's per-rank loads file (JSON).
inline constexpr char kPlaceLoadsFormat[] = "moebatch-place-loads";

// (what the path is, e.g. "model" or "HF_DIR/config.json"; the path)
using NamedPaths = std::vector<std::pair<std::string, std::string>>;

// PATH.partial: where an output is written until it is complete (moe-score's `--resume` continues
// an unfinished run's results there).
std::string partial_path(const std::string& path);

// True when a and b name the same file: through symbolic links, `..` and hard links.
bool same_file(const std::string& a, const std::string& b);

// True when `path` is an existing file of the given kind (a moebatch checkpoint, token dataset,
// results file, run report or placement file). Never throws.
bool is_output_of_kind(const std::string& path, OutputKind kind);

// An exclusive lock on an output (flock on PATH.lock, created if missing and removed on release).
// A second run on the same output gets moe::Error "another run is writing it".
class OutputLock {
 public:
  OutputLock() = default;
  explicit OutputLock(const std::string& output);
  OutputLock(OutputLock&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}
  OutputLock& operator=(OutputLock&& o) noexcept;
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock() { release(); }
  void release();

 private:
  std::string path_;
  int fd_ = -1;
};

// One output of one run. The constructor checks the path (an error names it and the reason),
// takes the lock and clears a stale PATH.partial of its own kind unless `keep_partial` (resume).
// The caller writes partial() and calls commit(); an output that is never committed has its
// partial file removed when this object goes away, unless keep_partial() was called.
class StagedOutput {
 public:
  struct Options {
    bool force = false;         // replace any regular file at PATH (or PATH.partial)
    bool keep_partial = false;  // an existing PATH.partial is continued, not cleared (--resume)
  };
  StagedOutput(std::string key, std::string path, OutputKind kind, const NamedPaths& inputs, Options options);
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;
  ~StagedOutput();

  const std::string& path() const { return path_; }
  const std::string& partial() const { return partial_; }
  // What the constructor found, for the program to say (empty when nothing): "replaces ...".
  const std::string& note() const { return note_; }
  // Syncs PATH.partial and renames it to PATH (throws moe::IoError naming the operation).
  void commit();
  // The partial file stays for a later run (moe-score stopped by a signal: --resume continues it).
  void keep_partial() { keep_ = true; }

 private:
  std::string key_;
  std::string path_;
  std::string partial_;
  std::string note_;
  OutputLock lock_;
  bool keep_ = false;
  bool done_ = false;
};

// Writes `text` to PATH through a StagedOutput (partial, fsync, rename); moe::IoError on failure.
void write_text_output(StagedOutput& output, const std::string& text);

}  // namespace moe
