#pragma once
// Small text inputs (run files, config.json, index files) read with a size limit, and the check
// that a path names a regular file. Both open nothing that could block: a FIFO or a device given
// as an input would otherwise hang open() or read() past any stop signal.
#include <cstddef>
#include <string>

namespace moe {

// Throws unless `path` is a regular file (not a folder, FIFO, socket or device); `what` names the
// input in the message ("the run file", "the checkpoint"). Uses stat(), which never blocks.
void require_regular_file(const std::string& path, const char* what);

// The whole file, refused with one line when it is larger than max_bytes.
std::string read_small_file(const std::string& path, std::size_t max_bytes, const char* what);

}  // namespace moe
