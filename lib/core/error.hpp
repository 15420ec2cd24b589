#pragma once
// Errors: library code throws moe::Error with a message that names what failed and where;
// mains catch it, print one line and end the job (MPI_Abort when other ranks may wait).
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An error every rank of the job raised together (inputs are validated collectively), so one
// rank reports it and all ranks can end normally instead of aborting.
class CollectiveError : public Error {
 public:
  using Error::Error;
};

// A failed read or write of a file the program writes (full disk, I/O error, failed rename): the
// message names the file and the operation. Mains exit with kIoErrorExitCode (core/exit.hpp).
class IoError : public Error {
 public:
  using Error::Error;
};

// Throws moe::Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

namespace detail {
[[noreturn]] void fail_call(const char* api, const char* call, const std::string& what, const char* file, int line);
}  // namespace detail

}  // namespace moe

// Checks an invariant of the program or of its input; the message names the bad value.
#define MOE_CHECK(cond, ...)               \
  do {                                     \
    if (!(cond)) ::moe::fail(__VA_ARGS__); \
  } while (0)

// Checks an MPI call: the message names the call, file:line and the MPI error string.
#define MOE_MPI_CHECK(call)                                                                                \
  do {                                                                                                     \
    int moe_mpi_rc_ = (call);                                                                              \
    if (moe_mpi_rc_ != MPI_SUCCESS) {                                                                      \
      char moe_mpi_msg_[MPI_MAX_ERROR_STRING];                                                             \
      int moe_mpi_len_ = 0;                                                                                \
      MPI_Error_string(moe_mpi_rc_, moe_mpi_msg_, &moe_mpi_len_);                                          \
      ::moe::detail::fail_call("MPI", #call, std::string(moe_mpi_msg_, moe_mpi_len_), __FILE__, __LINE__); \
    }                                                                                                      \
  } while (0)

// Checks an HDF5 call that returns a negative value (herr_t or hid_t) on failure.
#define MOE_H5_CHECK(call)                                                                     \
  ([&]() {                                                                                     \
    auto moe_h5_rc_ = (call);                                                                  \
    if (moe_h5_rc_ < 0) ::moe::detail::fail_call("HDF5", #call, "failed", __FILE__, __LINE__); \
    return moe_h5_rc_;                                                                         \
  }())
