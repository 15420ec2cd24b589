#pragma once
// Exit codes of every program (README "Exit codes") and the one way to end a job from a rank
// that hit an error other ranks do not know about.
#include <exception>
#include <string>

namespace moe {

inline constexpr int kErrorExitCode = 1;     // bad input, refused output, any other error
inline constexpr int kIoErrorExitCode = 74;  // EX_IOERR: writing an output failed (full disk, ...)
// kStoppedExitCode (75) is in runtime/signals.hpp.

// The name printed before every error line ("moe-score: error: ...").
void set_program_name(const char* name);

// Prints "PROGRAM: error: MESSAGE" and ends the whole job at once with `code` (MPI_Abort, so no
// rank waits in a collective and no destructor runs a collective close). For errors raised on
// some ranks only, e.g. a write that failed on one rank's part of the file.
[[noreturn]] void abort_job(const std::string& message, int code);

// The exit code for an exception: kIoErrorExitCode for moe::IoError, else kErrorExitCode.
int exit_code_for(const std::exception& e);

}  // namespace moe
