#include "config/run_config.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/input_file.hpp"

namespace moe {

namespace {

// A run file is a few dozen lines. Parsing YAML costs about 200 bytes of memory per byte of text,
// so the limit is what keeps a hostile file (millions of keys, one long list) to a few MiB.
constexpr std::size_t kMaxRunFileBytes = 64u << 10;
// Far above any node's cores: more would only exhaust the machine's threads.
constexpr int64_t kMaxThreads = 4096;
// Far above any batch that fits a node; keeps batch arithmetic far from int64 overflow.
constexpr int64_t kMaxBatchSize = int64_t{1} << 30;

// Every key a run file may hold; "a.b" names nested keys.
const std::set<std::string> kKnownKeys = {
    "model",
    "input",
    "output",
    "report",
    "batch_size",
    "backend",
    "threads",
    "progress_seconds",
    "watchdog_seconds",
    "mmap_weights",
    "on_nonfinite",
    "parallel",
    "parallel.tp",
    "parallel.ranks_per_node",
    "moe",
    "moe.gating",
    "moe.capacity_factor",
    "moe.alltoall",
    "moe.dispatch_chunks",
    "moe.placement",
    "moe.trace",
    "moe.trace_topk",
    "moe.expert_cache",
    "moe.expert_cache.slots",
    "moe.expert_cache.policy",
    "moe.expert_cache.trace",
};

// A key that groups others ("parallel", "moe") must hold a mapping (or nothing), not a value.
bool is_section(const std::string& key) {
  const auto it = kKnownKeys.upper_bound(key + ".");
  return it != kKnownKeys.end() && it->rfind(key + ".", 0) == 0;
}

void check_entry(const std::string& key, const YAML::Node& value, const std::string& source);

void reject_unknown_keys(const YAML::Node& node, const std::string& prefix, const std::string& source) {
  std::set<std::string> seen;
  for (const auto& item : node) {
    MOE_CHECK(item.first.IsScalar(), "{}: keys must be plain names (found a list or mapping as a key under '{}')",
              source, prefix);
    const std::string key = prefix + item.first.Scalar();
    MOE_CHECK(seen.insert(key).second, "{}: key '{}' appears twice", source, key);
    check_entry(key, item.second, source);
  }
}

void check_entry(const std::string& key, const YAML::Node& value, const std::string& source) {
  MOE_CHECK(kKnownKeys.count(key), "{}: unknown key '{}'", source, key);
  MOE_CHECK(!is_section(key) || value.IsMap() || value.IsNull(), "{}: '{}' must be a mapping of its keys ({}.*)",
            source, key, key);
  if (value.IsMap()) reject_unknown_keys(value, key + ".", source);
}

// Applies "a.b=value": the value is parsed as YAML, so numbers stay numbers.
void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  MOE_CHECK(eq != std::string::npos && eq > 0, "--set '{}': expected key=value", assignment);
  MOE_CHECK(assignment.size() <= kMaxRunFileBytes, "--set '{}...': longer than the limit of {} bytes",
            assignment.substr(0, 40), kMaxRunFileBytes);
  const std::string key = assignment.substr(0, eq);
  MOE_CHECK(kKnownKeys.count(key), "--set '{}': unknown key '{}'", assignment, key);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    fail("--set '{}': malformed value: {}", assignment, e.msg);
  }
  check_entry(key, value, "--set '" + assignment + "'");
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  // yaml-cpp nodes are handles: walking with operator[] and reassigning would rebind, so recurse.
  std::function<void(YAML::Node, std::size_t)> set = [&](YAML::Node node, std::size_t i) {
    if (i + 1 == parts.size()) {
      node[parts[i]] = value;
      return;
    }
    if (!node[parts[i]] || !node[parts[i]].IsMap()) node[parts[i]] = YAML::Node(YAML::NodeType::Map);
    set(node[parts[i]], i + 1);
  };
  set(root, 0);
}

template <typename T>
T scalar(const YAML::Node& root, const std::string& key, const std::string& source, T fallback) {
  // Node::operator= would overwrite the node it refers to; reset() rebinds the handle.
  YAML::Node node;
  node.reset(root);
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    if (!node.IsMap() || !node[part]) return fallback;
    const YAML::Node child = node[part];
    node.reset(child);
  }
  MOE_CHECK(node.IsScalar(), "{}: '{}' must be a single value", source, key);
  T value;
  MOE_CHECK(YAML::convert<T>::decode(node, value), "{}: '{}' has a bad value '{}'", source, key, node.Scalar());
  return value;
}

}  // namespace

CacheSlots parse_cache_slots(const std::string& text, const std::string& what) {
  const char* valid = "valid: all, a number of experts >= 1, or a percentage such as 25%";
  if (text == "all") return {};
  const bool percent = !text.empty() && text.back() == '%';
  const std::string digits = percent ? text.substr(0, text.size() - 1) : text;
  char* end = nullptr;
  const double value = digits.empty() ? 0.0 : std::strtod(digits.c_str(), &end);
  MOE_CHECK(!digits.empty() && end == digits.c_str() + digits.size() && std::isfinite(value), "{} is '{}' ({})", what,
            text, valid);
  if (percent) {
    MOE_CHECK(value > 0 && value <= 100, "{} is '{}': a percentage must be in (0, 100]", what, text);
    return {false, 0, value};
  }
  MOE_CHECK(value == std::floor(value) && value >= 1, "{} is '{}': at least 1 expert must be resident ({})", what, text,
            valid);
  return {false, static_cast<int64_t>(value), 0.0};
}

const char* gating_name(GatingKind g) {
  return g == GatingKind::dynamic ? "dynamic" : "static";
}
const char* alltoall_name(AllToAllKind a) {
  return a == AllToAllKind::flat ? "flat" : "hierarchical";
}

RunConfig RunConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  MOE_CHECK(!std::filesystem::is_directory(path), "{}: is a folder, not a run file", path);
  return parse(read_small_file(path, kMaxRunFileBytes, "the run file"), path, overrides);
}

RunConfig RunConfig::parse(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides) {
  MOE_CHECK(yaml_text.size() <= kMaxRunFileBytes, "{}: the run file is {} bytes, more than the limit of {} bytes",
            source, yaml_text.size(), kMaxRunFileBytes);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail("{}: malformed YAML at line {}, column {}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  MOE_CHECK(root.IsMap(), "{}: the run file must be a YAML mapping of keys to values", source);
  reject_unknown_keys(root, "", source);
  for (const auto& o : overrides) apply_override(root, o);

  RunConfig c;
  c.model = scalar<std::string>(root, "model", source, "");
  c.input = scalar<std::string>(root, "input", source, "");
  c.output = scalar<std::string>(root, "output", source, "");
  c.report = scalar<std::string>(root, "report", source, "");
  MOE_CHECK(!c.model.empty(), "{}: missing key 'model' (the checkpoint)", source);
  MOE_CHECK(!c.input.empty(), "{}: missing key 'input' (the token dataset)", source);
  MOE_CHECK(!c.output.empty(), "{}: missing key 'output' (the results file)", source);
  c.batch_size = scalar<int64_t>(root, "batch_size", source, c.batch_size);
  MOE_CHECK(c.batch_size > 0, "{}: 'batch_size' must be positive, got {}", source, c.batch_size);
  MOE_CHECK(c.batch_size <= kMaxBatchSize, "{}: 'batch_size' is {}, more than the limit of {}", source, c.batch_size,
            kMaxBatchSize);
  c.backend = scalar<std::string>(root, "backend", source, c.backend);
  c.threads = scalar<int64_t>(root, "threads", source, c.threads);
  MOE_CHECK(c.threads >= 0, "{}: 'threads' must be >= 0, got {}", source, c.threads);
  MOE_CHECK(c.threads <= kMaxThreads, "{}: 'threads' is {}, more than the limit of {}", source, c.threads, kMaxThreads);
  c.progress_seconds = scalar<double>(root, "progress_seconds", source, c.progress_seconds);
  MOE_CHECK(c.progress_seconds >= 0 && std::isfinite(c.progress_seconds), "{}: 'progress_seconds' must be >= 0",
            source);
  c.watchdog_seconds = scalar<double>(root, "watchdog_seconds", source, c.watchdog_seconds);
  MOE_CHECK(c.watchdog_seconds >= 0 && c.watchdog_seconds <= 1e7, "{}: 'watchdog_seconds' must be in [0, 1e7], got {}",
            source, c.watchdog_seconds);
  c.mmap_weights = scalar<bool>(root, "mmap_weights", source, c.mmap_weights);
  const std::string nonfinite = scalar<std::string>(root, "on_nonfinite", source, "stop");
  MOE_CHECK(nonfinite == "stop" || nonfinite == "mark", "{}: 'on_nonfinite' is '{}' (valid: stop, mark)", source,
            nonfinite);
  c.on_nonfinite = nonfinite == "stop" ? NonFiniteAction::stop : NonFiniteAction::mark;
  c.parallel.tp = scalar<int64_t>(root, "parallel.tp", source, c.parallel.tp);
  MOE_CHECK(c.parallel.tp > 0, "{}: 'parallel.tp' must be positive, got {}", source, c.parallel.tp);
  const std::string rpn = scalar<std::string>(root, "parallel.ranks_per_node", source, "auto");
  if (rpn != "auto") {
    c.parallel.ranks_per_node = scalar<int64_t>(root, "parallel.ranks_per_node", source, 0);
    MOE_CHECK(c.parallel.ranks_per_node > 0, "{}: 'parallel.ranks_per_node' must be 'auto' or positive, got '{}'",
              source, rpn);
  }
  const std::string gating = scalar<std::string>(root, "moe.gating", source, "dynamic");
  MOE_CHECK(gating == "dynamic" || gating == "static", "{}: 'moe.gating' is '{}' (valid: dynamic, static)", source,
            gating);
  c.moe.gating = gating == "dynamic" ? GatingKind::dynamic : GatingKind::static_capacity;
  c.moe.capacity_factor = scalar<double>(root, "moe.capacity_factor", source, c.moe.capacity_factor);
  MOE_CHECK(c.moe.capacity_factor > 0 && std::isfinite(c.moe.capacity_factor),
            "{}: 'moe.capacity_factor' must be positive, got {}", source, c.moe.capacity_factor);
  const std::string a2a = scalar<std::string>(root, "moe.alltoall", source, "hierarchical");
  MOE_CHECK(a2a == "flat" || a2a == "hierarchical", "{}: 'moe.alltoall' is '{}' (valid: flat, hierarchical)", source,
            a2a);
  c.moe.alltoall = a2a == "flat" ? AllToAllKind::flat : AllToAllKind::hierarchical;
  c.moe.dispatch_chunks = scalar<int64_t>(root, "moe.dispatch_chunks", source, c.moe.dispatch_chunks);
  MOE_CHECK(c.moe.dispatch_chunks >= 1 && c.moe.dispatch_chunks <= 64,
            "{}: 'moe.dispatch_chunks' must be in [1, 64], got {}", source, c.moe.dispatch_chunks);
  c.moe.placement = scalar<std::string>(root, "moe.placement", source, "");
  c.moe.trace = scalar<bool>(root, "moe.trace", source, false);
  c.moe.trace_topk = scalar<bool>(root, "moe.trace_topk", source, false);
  MOE_CHECK(c.moe.trace || !c.moe.trace_topk, "{}: 'moe.trace_topk' needs 'moe.trace: true'", source);
  auto& cache = c.moe.expert_cache;
  cache.slots = scalar<std::string>(root, "moe.expert_cache.slots", source, cache.slots);
  cache.policy = scalar<std::string>(root, "moe.expert_cache.policy", source, cache.policy);
  cache.trace = scalar<std::string>(root, "moe.expert_cache.trace", source, "");
  // The numbers are checked against the model's experts later (moe/cache/cache_settings.hpp).
  parse_cache_slots(cache.slots, source + ": 'moe.expert_cache.slots'");

  YAML::Emitter out;
  out << root;
  c.effective_yaml = out.c_str();
  return c;
}

}  // namespace moe
