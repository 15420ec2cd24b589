#pragma once
// A hash of the run-file keys that change the numbers in the results, stored in the results file
// so that `--resume` refuses to continue output made with another configuration.
#include <string>

#include "config/run_config.hpp"

namespace moe {

// FNV-1a (hex) over the run file after --set overrides, flattened to sorted `a.b=value` lines,
// leaving out the keys that name files or only change what is printed: model and input (their
// contents are checked by checksum), output, report, progress_seconds. Keys added to the run file
// later are included automatically. The order of keys in the file does not matter; an explicit
// default (batch_size: 8 written out) counts as a difference from an absent key.
std::string run_fingerprint(const RunConfig& config);

}  // namespace moe
