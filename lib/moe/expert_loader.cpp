#include "moe/expert_loader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace moe {

namespace {
// Staging bound: an expert of a large model is hundreds of MB; the tier between file and backend
// memory stays a few MB.
constexpr std::size_t kStagingBytes = std::size_t{4} << 20;

bool all_finite(const std::byte* p, std::size_t bytes, DType dtype) {
  if (dtype == DType::bf16) {
    for (std::size_t i = 0; i + 1 < bytes; i += 2) {
      uint16_t v;
      std::memcpy(&v, p + i, 2);
      if ((v & 0x7f80u) == 0x7f80u) return false;
    }
    return true;
  }
  for (std::size_t i = 0; i + 3 < bytes; i += 4) {
    uint32_t v;
    std::memcpy(&v, p + i, 4);
    if ((v & 0x7f800000u) == 0x7f800000u) return false;
  }
  return true;
}
}  // namespace

ExpertLoader::ExpertLoader(const std::string& path, Backend& backend) : path_(path), backend_(backend) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MOE_CHECK(fd_ >= 0, "{}: cannot open for the expert cache: {}", path, std::strerror(errno));
  staging_.resize(kStagingBytes);
  thread_ = std::thread([this] { run(); });
}

ExpertLoader::~ExpertLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  ::close(fd_);
}

uint64_t ExpertLoader::submit(std::vector<LoadSegment> segments) {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ticket = ++submitted_;
    queue_.emplace_back(ticket, std::move(segments));
  }
  cv_.notify_all();
  return ticket;
}

bool ExpertLoader::done(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  return landed_ >= ticket;
}

void ExpertLoader::wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return landed_ >= ticket; });
  MOE_CHECK(failed_ == 0 || failed_ > ticket, "{}", error_);
}

void ExpertLoader::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return landed_ >= submitted_; });
}

void ExpertLoader::run() {
  for (;;) {
    std::pair<uint64_t, std::vector<LoadSegment>> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ with nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::string error;
    try {
      load(job.second);
    } catch (const std::exception& e) {
      error = e.what();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      landed_ = job.first;
      if (!error.empty() && failed_ == 0) {
        failed_ = job.first;
        error_ = error;
      }
    }
    cv_.notify_all();
  }
}

void ExpertLoader::load(const std::vector<LoadSegment>& segments) {
  // All of the job's reads go to the storage at once (asynchronous readahead) before the staged
  // preads wait for them one part at a time. Advice only: a failure changes nothing but speed.
  for (const LoadSegment& s : segments)
    (void)::posix_fadvise(fd_, static_cast<off_t>(s.file_offset), static_cast<off_t>(s.bytes), POSIX_FADV_WILLNEED);
  for (const LoadSegment& s : segments) {
    for (std::size_t done = 0; done < s.bytes;) {
      const std::size_t part = std::min(staging_.size(), s.bytes - done);
      std::size_t got = 0;
      while (got < part) {
        const ssize_t n =
            ::pread(fd_, staging_.data() + got, part - got, static_cast<off_t>(s.file_offset + done + got));
        if (n < 0 && errno == EINTR) continue;
        MOE_CHECK(n > 0, "{}: reading '{}' for the expert cache at byte {} failed: {}", path_, *s.what,
                  s.file_offset + done + got, n == 0 ? "end of file" : std::strerror(errno));
        got += static_cast<std::size_t>(n);
      }
      MOE_CHECK(all_finite(staging_.data(), part, s.dtype), "{}: dataset '{}' holds a non-finite value", path_,
                *s.what);
      backend_.copy_to_device(s.dst + done, staging_.data(), part);
      done += part;
    }
  }
}

}  // namespace moe
