#include "core/input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace moe {

namespace {

const char* kind_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

}  // namespace

void require_regular_file(const std::string& path, const char* what) {
  struct stat st {};
  MOE_CHECK(::stat(path.c_str(), &st) == 0, "{}: cannot open {} ({})", path, what, std::strerror(errno));
  MOE_CHECK(S_ISREG(st.st_mode), "{}: {} is {}, not a regular file", path, what, kind_name(st.st_mode));
}

std::string read_small_file(const std::string& path, std::size_t max_bytes, const char* what) {
  require_regular_file(path, what);
  // O_NONBLOCK: should the path become a FIFO between stat and open, open() still returns.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  MOE_CHECK(fd >= 0, "{}: cannot open {} ({})", path, what, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  MOE_CHECK(::fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "{}: {} is not a regular file", path, what);
  MOE_CHECK(static_cast<std::size_t>(st.st_size) <= max_bytes, "{}: {} is {} bytes, more than the limit of {} bytes",
            path, what, st.st_size, max_bytes);
  // Read at most size + 1 bytes: a file that grew since fstat fails the check below.
  std::string text(std::min(static_cast<std::size_t>(st.st_size), max_bytes) + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    MOE_CHECK(n >= 0, "{}: cannot read {} ({})", path, what, std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  MOE_CHECK(got < text.size(), "{}: {} grew while it was read (the limit is {} bytes)", path, what, max_bytes);
  text.resize(got);
  return text;
}

}  // namespace moe
