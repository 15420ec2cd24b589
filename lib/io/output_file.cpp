#include "io/output_file.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/h5.hpp"

namespace moe {

namespace fs = std::filesystem;

namespace {

// Written into a lock file we create: a file at PATH.lock without it is someone else's.
const char kLockMarker[] = "moebatch output lock\n";
// A run report or placement file is small; anything larger at its path is not one.
constexpr std::uintmax_t kMaxReportBytes = 64u << 20;

const char* kind_name(OutputKind kind) {
  switch (kind) {
    case OutputKind::checkpoint:
      return "moebatch checkpoint";
    case OutputKind::tokens:
      return "token dataset";
    case OutputKind::results:
      return "moe-score results file";
    case OutputKind::report:
      return "moe-score run report";
    case OutputKind::placement:
      return "moe-place placement file";
    case OutputKind::cache_table:
      return "moe-bench cache CSV table";
    case OutputKind::place_loads:
      return "moe-bench place loads file";
  }
  return "output";
}

std::string system_error(int err) {
  return std::strerror(err);
}

bool is_h5_of_kind(const std::string& path, OutputKind kind) {
  if (H5Fis_hdf5(path.c_str()) <= 0) return false;
  const h5::File file = h5::File::open_read(path, MPI_COMM_SELF);
  switch (kind) {
    case OutputKind::checkpoint:
      return file.string_attribute("/", "format") == "moebatch-checkpoint";
    case OutputKind::tokens:
      return file.has("tokens") && (file.has("lengths") || file.has("offsets"));
    case OutputKind::results:
      return file.has("batch_done") && file.read_attributes().count("model_checksum") == 1;
    case OutputKind::report:
    case OutputKind::placement:
    case OutputKind::cache_table:
    case OutputKind::place_loads:
      return false;
  }
  return false;
}

// The JSON outputs: a run report carries moebatch_version, a placement file its format name.
bool is_json_of_kind(const std::string& path, OutputKind kind) {
  if (fs::file_size(path) > kMaxReportBytes) return false;
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) return false;
  if (kind == OutputKind::report) return j.contains("moebatch_version");
  if (kind == OutputKind::place_loads) return j.value("format", std::string()) == kPlaceLoadsFormat;
  return j.value("format", std::string()) == "moebatch-placement";
}

bool is_json_kind(OutputKind kind) {
  return kind == OutputKind::report || kind == OutputKind::placement || kind == OutputKind::place_loads;
}

// moe-bench cache's CSV: its header line.
bool is_csv_table(const std::string& path) {
  const std::string want = std::string(kCacheTableCsvHeader) + "\n";
  std::string head(want.size(), '\0');
  std::ifstream in(path, std::ios::binary);
  return in.read(head.data(), static_cast<std::streamsize>(head.size())) && head == want;
}

// The folder must exist and be writable: the partial file and the lock are created there.
void check_folder(const std::string& key, const std::string& path) {
  const fs::path folder = fs::absolute(path).parent_path();
  MOE_CHECK(fs::is_directory(folder), "{}: the folder of '{}' ({}) does not exist", path, key, folder.string());
  MOE_CHECK(::access(folder.c_str(), W_OK) == 0, "{}: the folder of '{}' ({}) is not writable ({})", path, key,
            folder.string(), system_error(errno));
}

// A stale PATH.partial from a run that was killed or failed may be cut short anywhere: it is
// ours when it is empty, begins like our kind of file (HDF5 signature, JSON object) or is complete.
bool looks_like_partial(const std::string& path, OutputKind kind) {
  std::ifstream in(path, std::ios::binary);
  char first = 0;
  if (!in.get(first)) return true;  // empty
  if (is_json_kind(kind)) return first == '{';
  if (kind == OutputKind::cache_table) return first == kCacheTableCsvHeader[0];
  return H5Fis_hdf5(path.c_str()) > 0;
}

// What replacing an existing file at `path` needs: a regular file, and of our kind unless forced.
// Returns true when a file is there.
bool check_replaceable(const std::string& key, const std::string& path, OutputKind kind, bool force,
                       bool partial = false) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return false;
  MOE_CHECK(!fs::is_directory(st), "{}: '{}' is a folder, not a file", path, key);
  MOE_CHECK(fs::is_regular_file(st),
            "{}: '{}' is not a regular file (a device, FIFO or socket); moebatch writes only regular files", path, key);
  MOE_CHECK(force || is_output_of_kind(path, kind) || (partial && looks_like_partial(path, kind)),
            "{}: '{}' exists and is not a {}; refusing to replace it (remove it, choose another name, or pass --force)",
            path, key, kind_name(kind));
  return true;
}

}  // namespace

std::string partial_path(const std::string& path) {
  return path + ".partial";
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ec);
  const fs::path cb = fs::weakly_canonical(fs::absolute(b), ec);
  if (ca == cb || fs::absolute(a).lexically_normal() == fs::absolute(b).lexically_normal()) return true;
  return fs::equivalent(a, b, ec);  // hard links; false (with ec set) when either is missing
}

bool is_output_of_kind(const std::string& path, OutputKind kind) {
  try {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return false;
    if (kind == OutputKind::cache_table) return is_csv_table(path);
    return is_json_kind(kind) ? is_json_of_kind(path, kind) : is_h5_of_kind(path, kind);
  } catch (const std::exception&) {
    return false;
  }
}

OutputLock::OutputLock(const std::string& output) : path_(output + ".lock") {
  // The holder before us removes the lock file when it is done; if that happened between our open
  // and our flock, the file we locked is no longer at the path: open again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0)
      MOE_CHECK(S_ISREG(st.st_mode), "{}: the lock file of {} is not a regular file; remove it", path_, output);
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) throw IoError(fmt::format("{}: creating the lock file failed ({})", path_, system_error(errno)));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      MOE_CHECK(err != EWOULDBLOCK,
                "{}: another run is writing it (it holds {}); wait for it to end or choose another output", output,
                path_);
      throw IoError(fmt::format("{}: locking failed ({})", path_, system_error(err)));
    }
    struct stat held {};
    struct stat now {};
    if (::fstat(fd, &held) == 0 && ::stat(path_.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      char head[sizeof(kLockMarker)] = {};
      const ssize_t got = ::pread(fd, head, sizeof(kLockMarker) - 1, 0);
      const bool ours = got == 0 || (got == sizeof(kLockMarker) - 1 && std::strcmp(head, kLockMarker) == 0);
      if (!ours) {
        ::close(fd);
        fail("{}: exists and is not a moebatch lock file, so it is not removed; rename it to write {}", path_, output);
      }
      if (got == 0 && ::pwrite(fd, kLockMarker, sizeof(kLockMarker) - 1, 0) < 0) {
        const int err = errno;
        ::close(fd);
        throw IoError(fmt::format("{}: writing the lock file failed ({})", path_, system_error(err)));
      }
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  fail("{}: could not take the lock {} (other runs keep replacing it)", output, path_);
}

OutputLock& OutputLock::operator=(OutputLock&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void OutputLock::release() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still holding it: a waiting run then opens a new file
  ::close(fd_);
  fd_ = -1;
}

StagedOutput::StagedOutput(std::string key, std::string path, OutputKind kind, const NamedPaths& inputs,
                           Options options)
    : key_(std::move(key)), path_(std::move(path)), partial_(partial_path(path_)) {
  MOE_CHECK(!path_.empty(), "'{}': empty path", key_);
  for (const auto& [input_key, input] : inputs) {
    if (input.empty()) continue;
    for (const std::string* mine : {&path_, &partial_})
      MOE_CHECK(!same_file(*mine, input), "{}: '{}' is the same file as '{}' ({}), which it would overwrite", *mine,
                key_, input_key, input);
  }
  check_folder(key_, path_);
  const bool replaces = check_replaceable(key_, path_, kind, options.force);
  lock_ = OutputLock(path_);
  // Checked under the lock: no other run is writing the partial file now.
  if (check_replaceable(key_, partial_, kind, options.force, true) && !options.keep_partial) {
    std::error_code ec;
    fs::remove(partial_, ec);
    if (ec) throw IoError(fmt::format("{}: removing the stale partial file failed ({})", partial_, ec.message()));
    note_ = fmt::format("discarded the unfinished {} ", partial_);
  }
  if (replaces)
    note_ += fmt::format("{}{} exists and will be replaced when this run completes", note_.empty() ? "" : "; ", path_);
}

StagedOutput::~StagedOutput() {
  if (done_ || keep_) return;
  std::error_code ec;
  fs::remove(partial_, ec);  // created by this run (a stale one was cleared or refused above)
}

void StagedOutput::commit() {
  const int fd = ::open(partial_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(fmt::format("{}: opening for sync failed ({})", partial_, system_error(errno)));
  const int synced = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (synced != 0) throw IoError(fmt::format("{}: syncing to disk failed ({})", partial_, system_error(err)));
  if (::rename(partial_.c_str(), path_.c_str()) != 0)
    throw IoError(fmt::format("{}: renaming to {} failed ({})", partial_, path_, system_error(errno)));
  done_ = true;
  // The rename is durable once the folder is synced.
  const int dir = ::open(fs::absolute(path_).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  lock_.release();
}

void write_text_output(StagedOutput& output, const std::string& text) {
  const std::string& path = output.partial();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) throw IoError(fmt::format("{}: creating failed ({})", path, system_error(errno)));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw IoError(fmt::format("{}: writing failed ({})", path, system_error(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) throw IoError(fmt::format("{}: closing failed ({})", path, system_error(errno)));
  output.commit();
}

}  // namespace moe
