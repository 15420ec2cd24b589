#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace moe {

namespace {

// The mapped ranges the SIGBUS handler knows, filled before their mapping is used and never
// moved, so the handler reads them without locks (the count is published last).
struct MappedRange {
  std::atomic<std::uintptr_t> begin{0}, end{0};
  char path[512] = {};
};
constexpr int kMaxRanges = 16;
MappedRange g_ranges[kMaxRanges];
std::atomic<int> g_range_count{0};

std::mutex& ranges_lock() {
  static std::mutex lock;
  return lock;
}

void write_all(const char* text) {
  for (std::size_t left = std::strlen(text); left > 0;) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

// Async-signal-safe: write(2) and _exit(2) only.
void on_sigbus(int signal, siginfo_t* info, void* /*context*/) {
  const auto at = reinterpret_cast<std::uintptr_t>(info->si_addr);
  const int count = std::min(g_range_count.load(), kMaxRanges);
  for (int i = 0; i < count; ++i) {
    if (at < g_ranges[i].begin.load() || at >= g_ranges[i].end.load()) continue;
    write_all("error: ");
    write_all(g_ranges[i].path);
    write_all(": the checkpoint changed (shorter) while its weights were mapped (mmap_weights: true); "
              "do not rewrite a checkpoint in use, or run with mmap_weights: false\n");
    ::_exit(1);
  }
  ::signal(signal, SIG_DFL);  // not ours: the default action, as if no handler were installed
  ::raise(signal);
}

void remember(const std::string& path, const std::byte* data, std::size_t size) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction action{};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    (void)::sigaction(SIGBUS, &action, nullptr);
  });
  const std::lock_guard<std::mutex> guard(ranges_lock());
  const int count = g_range_count.load();
  int i = 0;
  while (i < count && g_ranges[i].end.load() != 0) ++i;  // a free slot (forgotten), or a new one
  if (i >= kMaxRanges) return;  // the run still works; a SIGBUS there is a plain crash
  // An empty range (end 0) while the path is written; end last makes it valid.
  std::snprintf(g_ranges[i].path, sizeof g_ranges[i].path, "%s", path.c_str());
  g_ranges[i].begin = reinterpret_cast<std::uintptr_t>(data);
  g_ranges[i].end = reinterpret_cast<std::uintptr_t>(data) + size;
  if (i == count) g_range_count = count + 1;
}

void forget(const std::byte* data) {
  const std::lock_guard<std::mutex> guard(ranges_lock());
  for (MappedRange& r : g_ranges)
    if (r.end.load() != 0 && r.begin.load() == reinterpret_cast<std::uintptr_t>(data)) r.end = 0;
}

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st{};
  void* data = MAP_FAILED;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    // At an address that is a multiple of 2 MiB, so that file offsets and addresses agree modulo
    // a huge page: the kernel can then map the page cache's large folios with one TLB entry per
    // 2 MiB (MADV_HUGEPAGE asks for them when it reads the file).
    const std::size_t size = static_cast<std::size_t>(st.st_size);
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    void* hole = ::mmap(nullptr, size + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (hole != MAP_FAILED) {
      auto* at = reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(hole) + kHuge - 1) & ~(kHuge - 1));
      data = ::mmap(at, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
      // Unmap the hole's ends around the mapping (or all of it when the mapping failed).
      auto* end = static_cast<std::byte*>(hole) + size + kHuge;
      if (data == MAP_FAILED) {
        ::munmap(hole, size + kHuge);
      } else {
        if (at != hole) ::munmap(hole, static_cast<std::size_t>(static_cast<std::byte*>(at) - static_cast<std::byte*>(hole)));
        auto* tail = static_cast<std::byte*>(at) + (size + kHuge - 1) / kHuge * kHuge;
        if (tail < end) ::munmap(tail, static_cast<std::size_t>(end - tail));
        (void)::madvise(data, size, MADV_HUGEPAGE);
      }
    }
  }
  ::close(fd);  // the mapping keeps the file
  if (data == MAP_FAILED) return nullptr;
  remember(path, static_cast<const std::byte*>(data), static_cast<std::size_t>(st.st_size));
  return std::shared_ptr<const MappedFile>(
      new MappedFile(static_cast<const std::byte*>(data), static_cast<std::size_t>(st.st_size)));
}

MappedFile::~MappedFile() {
  forget(data_);
  ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::will_need(std::size_t offset, std::size_t bytes) const {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t begin = offset / page * page;
  (void)::madvise(const_cast<std::byte*>(data_) + begin, offset + bytes - begin, MADV_WILLNEED);
}

}  // namespace moe
