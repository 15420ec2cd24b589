#pragma once
// A whole file mapped read-only, so that weights can be used where the page cache holds them:
// no copy, no fresh memory for the kernel to clear (start-up after another process released
// memory), and one copy in memory for all the ranks of a node that read the same boxes.
// The file must not change while it is mapped (as with any mmap'd model): a run that cannot
// promise that keeps `mmap_weights: false`. If it is truncated anyway, touching a page past its
// new end raises SIGBUS; the handler installed with the first mapping turns that into one line
// naming the file and exit code 1 instead of a bare crash.
#include <cstddef>
#include <memory>
#include <string>

namespace moe {

class MappedFile {
 public:
  // Nothing (the caller reads instead) when the file cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  // Asks the kernel to read [offset, offset + bytes) ahead (a no-op for pages already cached).
  void will_need(std::size_t offset, std::size_t bytes) const;

 private:
  MappedFile(const std::byte* data, std::size_t size) : data_(data), size_(size) {}
  const std::byte* data_;
  std::size_t size_;
};

}  // namespace moe
