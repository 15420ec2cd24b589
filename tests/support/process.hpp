#pragma once
// Runs the project's programs from tests: a command line in a shell, its exit code and its
// combined stdout+stderr, and a fresh scratch folder per test.
#include <filesystem>
#include <string>

namespace moe::test {

// Whether this build runs under AddressSanitizer (the sanitize preset builds the programs the
// tests start the same way): its shadow memory and quarantine inflate RSS, so ceilings on a
// program's peak RSS measure the sanitizer, not the program.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif


struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult run_command(const std::string& command);

// Absolute path of a built program (build/bin/NAME).
std::string program(const std::string& name);
// Absolute path under the source tree's inputs/.
std::string input_file(const std::string& relative);
// `env ... mpirun` with what it needs here (root, more ranks than cores) for `ranks` ranks; it may
// be prefixed, e.g. with `timeout 60 `.
std::string mpirun(int ranks);

// A new empty folder under the system temp dir, removed when the object goes away.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Writes a run file with the usual keys plus `extra` YAML lines; returns its path.
std::string write_run_file(const ScratchDir& dir, const std::string& model, const std::string& input,
                           const std::string& output, const std::string& extra = "");

}  // namespace moe::test
