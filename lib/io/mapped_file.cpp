#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>

namespace moe {

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
  return std::shared_ptr<const MappedFile>(
      new MappedFile(static_cast<const std::byte*>(data), static_cast<std::size_t>(st.st_size)));
}

MappedFile::~MappedFile() { ::munmap(const_cast<std::byte*>(data_), size_); }

void MappedFile::will_need(std::size_t offset, std::size_t bytes) const {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t begin = offset / page * page;
  (void)::madvise(const_cast<std::byte*>(data_) + begin, offset + bytes - begin, MADV_WILLNEED);
}

}  // namespace moe
