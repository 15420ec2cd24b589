#pragma once
// Shared by the libFuzzer targets: the readers under test take file paths, so each input is
// written to one scratch file per process (in /dev/shm when it exists: no disk I/O per run).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace moe::fuzz {

inline std::string scratch_path(const char* name) {
  const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return dir + "/moe-fuzz-" + std::to_string(getpid()) + "-" + name;
}

inline void write_file(const std::string& path, const uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// Removes the scratch file when the process ends.
struct ScratchFile {
  std::string path;
  explicit ScratchFile(const char* name) : path(scratch_path(name)) {}
  ~ScratchFile() { unlink(path.c_str()); }
};

}  // namespace moe::fuzz
