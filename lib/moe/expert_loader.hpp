#pragma once
// The expert cache's I/O thread: copies runs of bytes from the checkpoint file into backend
// memory (pread into a bounded host staging buffer, then Backend::copy_to_device), in the order
// they were queued. It never calls HDF5 or MPI: the byte offsets are mapped beforehand
// (io/expert_extents.hpp) on the main thread, so the main thread's HDF5 and MPI calls (all-to-all,
// result writes) run while a load is in flight without any library being used from two threads.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.hpp"
#include "core/dtype.hpp"

namespace moe {

// One run of bytes: `bytes` at file offset `file_offset` go to `dst` (backend memory).
struct LoadSegment {
  uint64_t file_offset = 0;
  std::size_t bytes = 0;
  std::byte* dst = nullptr;
  DType dtype = DType::f32;           // for the finiteness check
  const std::string* what = nullptr;  // dataset name, for messages
};

class ExpertLoader {
 public:
  // Opens `path` read-only; the thread starts at once and sleeps until work is queued.
  ExpertLoader(const std::string& path, Backend& backend);
  ~ExpertLoader();
  ExpertLoader(const ExpertLoader&) = delete;
  ExpertLoader& operator=(const ExpertLoader&) = delete;

  // Queues one expert's segments; returns its ticket (ascending, from 1).
  uint64_t submit(std::vector<LoadSegment> segments);
  bool done(uint64_t ticket);
  // Blocks until `ticket` has landed; throws the load's error (file, dataset, offset) if it failed.
  void wait(uint64_t ticket);
  // Blocks until everything queued has landed (errors are left to wait()).
  void drain();

 private:
  void run();
  void load(const std::vector<LoadSegment>& segments);

  std::string path_;
  Backend& backend_;
  int fd_ = -1;
  std::vector<std::byte> staging_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<uint64_t, std::vector<LoadSegment>>> queue_;
  uint64_t submitted_ = 0;
  uint64_t landed_ = 0;  // tickets <= landed_ are finished (in order)
  uint64_t failed_ = 0;  // first failed ticket, 0: none
  std::string error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace moe
