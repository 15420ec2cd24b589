// Size and count limits on what a user hands the programs (issue 12): run files, config.json,
// model architectures, run-file numbers, inputs that are not regular files, and the memory check
// ("need X, available Y"). Each bad input is refused with one line naming the limit, quickly and
// without the memory its declared sizes would take.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

#include "config/model_config.hpp"
#include "config/run_config.hpp"
#include "core/error.hpp"
#include "core/input_file.hpp"
#include "core/memory_budget.hpp"
#include "io/hf_config.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

using testing::HasSubstr;

constexpr const char* kMinimal = "model: m.h5\ninput: t.h5\noutput: s.h5\n";

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string write(const ScratchDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir.file(name)) << text;
  return dir.file(name);
}

TEST(RunFileLimits, LargeFilesOfUnknownKeysOrOneLongListAreRefusedBySize) {
  ScratchDir dir("limits");
  std::string keys = kMinimal;
  for (int i = 0; keys.size() < (1u << 20); ++i) keys += "unknown_key_" + std::to_string(i) + ": 1\n";
  EXPECT_THAT(error_of([&] { RunConfig::load(write(dir, "keys.yaml", keys), {}); }),
              HasSubstr("more than the limit of 65536 bytes"));
  std::string list = std::string(kMinimal) + "batch_size: [";
  while (list.size() < (1u << 20)) list += "1, ";
  list += "1]\n";
  EXPECT_THAT(error_of([&] { RunConfig::load(write(dir, "list.yaml", list), {}); }), HasSubstr("limit of 65536 bytes"));
  EXPECT_THAT(error_of([&] { RunConfig::parse(list, "text", {}); }), HasSubstr("limit of 65536 bytes"));
  EXPECT_THAT(
      error_of([&] { RunConfig::parse(kMinimal, "run.yaml", {"batch_size=[" + std::string(70000, '1') + "]"}); }),
      HasSubstr("longer than the limit"));
}

TEST(RunFileLimits, NumbersOutOfRangeAreRefusedNotWrappedOrCrashing) {
  auto parse = [](const std::string& extra) { return RunConfig::parse(std::string(kMinimal) + extra, "run.yaml", {}); };
  EXPECT_THAT(error_of([&] { parse("threads: 4294967297\n"); }),
              HasSubstr("'threads' is 4294967297, more than the limit of 4096"));
  EXPECT_THAT(error_of([&] { parse("threads: 100000\n"); }),
              HasSubstr("'threads' is 100000, more than the limit of 4096"));
  EXPECT_THAT(error_of([&] { parse("batch_size: 9223372036854775807\n"); }),
              HasSubstr("more than the limit of 1073741824"));
  EXPECT_THAT(error_of([&] { parse("batch_size: 9223372036854775806\n"); }),
              HasSubstr("more than the limit of 1073741824"));
  EXPECT_THAT(error_of([&] { parse("watchdog_seconds: -1\n"); }), HasSubstr("'watchdog_seconds'"));
  EXPECT_THAT(error_of([&] { parse("on_nonfinite: ignore\n"); }),
              HasSubstr("'on_nonfinite' is 'ignore' (valid: stop, mark)"));
  EXPECT_THAT(error_of([&] { parse("progress_seconds: .inf\n"); }), HasSubstr("'progress_seconds'"));
  const RunConfig c = parse("threads: 4096\nbatch_size: 1073741824\nwatchdog_seconds: 30\non_nonfinite: mark\n");
  EXPECT_EQ(c.threads, 4096);
  EXPECT_EQ(c.batch_size, int64_t{1} << 30);
  EXPECT_EQ(c.watchdog_seconds, 30);
  EXPECT_EQ(c.on_nonfinite, NonFiniteAction::mark);
  const RunConfig d = parse("");
  EXPECT_EQ(d.watchdog_seconds, 600);
  EXPECT_EQ(d.on_nonfinite, NonFiniteAction::stop);
}

// Found by fuzz/run_file_fuzz: a list as a key escaped as a yaml-cpp exception.
TEST(RunFileLimits, KeysThatAreNotNamesAreRefused) {
  EXPECT_THAT(error_of([] { RunConfig::parse("model: m.h5\n[]: 1\n", "run.yaml", {}); }),
              HasSubstr("run.yaml: keys must be plain names"));
  EXPECT_THAT(error_of([] { RunConfig::parse("moe:\n  {a: 1}: 2\n", "run.yaml", {}); }),
              HasSubstr("keys must be plain names"));
  EXPECT_THAT(error_of([] { ModelConfig::from_yaml(YAML::Load("[1]: 2\n"), "m.yaml"); }),
              HasSubstr("m.yaml: keys must be plain names"));
}

TEST(InputFiles, FoldersAndFifosAreRefusedWithoutBlocking) {
  ScratchDir dir("fifo");
  EXPECT_THAT(error_of([&] { RunConfig::load(dir.path().string(), {}); }), HasSubstr("is a folder, not a run file"));
  const std::string fifo = dir.file("pipe");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(error_of([&] { RunConfig::load(fifo, {}); }), HasSubstr("is a FIFO, not a regular file"));
  EXPECT_THAT(error_of([&] { read_hf_config(fifo); }), HasSubstr("is a FIFO"));
  EXPECT_THAT(error_of([&] { require_regular_file(fifo, "the checkpoint"); }), HasSubstr("the checkpoint is a FIFO"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_THAT(error_of([&] { read_small_file(dir.file("missing"), 10, "x"); }), HasSubstr("cannot open x"));
}

TEST(ModelLimits, HugeCountsAreRefusedBeforeAnythingIsBuiltFromThem) {
  const auto spec = [](const std::string& extra) {
    return YAML::Load(std::string("max_positions: 256\n"
                                  "norm: rmsnorm\nnorm_eps: 1.0e-5\nposition: rope\nactivation: swiglu\n"
                                  "top_k: 2\nrouter_renormalize: true\n") +
                      extra);
  };
  const std::string kSmall = "vocab_size: 512\nhidden_size: 64\nnum_heads: 4\nexpert_ffn: 96\n";
  EXPECT_NO_THROW(ModelConfig::from_yaml(spec(kSmall + "num_layers: 2\nnum_experts: 8\n"), "m.yaml"));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(
      error_of([&] { ModelConfig::from_yaml(spec(kSmall + "num_layers: 2147483647\nnum_experts: 8\n"), "m.yaml"); }),
      HasSubstr("'num_layers' is 2147483647, more than the limit of 4096"));
  EXPECT_THAT(
      error_of([&] { ModelConfig::from_yaml(spec(kSmall + "num_layers: 2\nnum_experts: 2147483647\n"), "m.yaml"); }),
      HasSubstr("layer_num_experts[0] is 2147483647, more than the limit of 65536"));
  EXPECT_THAT(
      error_of([&] {
        ModelConfig::from_yaml(
            spec(
                "vocab_size: 512\nnum_heads: 4\nexpert_ffn: 96\nnum_layers: 2\nnum_experts: 8\nhidden_size: 4194304\n"),
            "m.yaml");
      }),
      HasSubstr("'hidden_size' is 4194304, more than the limit"));
  // Every size within its limit, the whole still absurd: counted without overflow and refused.
  EXPECT_THAT(error_of([&] {
                ModelConfig::from_yaml(spec("num_layers: 4096\nnum_experts: 65536\nhidden_size: 1048576\n"
                                            "num_heads: 1024\nexpert_ffn: 1048576\nvocab_size: 2147483647\n"),
                                       "m.yaml");
              }),
              HasSubstr("parameters, more than the limit"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(HfConfigLimits, HugeCountsAndHugeFilesAreRefused) {
  ScratchDir dir("hfconfig");
  const std::string base =
      R"({"architectures": ["MixtralForCausalLM"], "vocab_size": 512, "hidden_size": 64, "num_attention_heads": 4,
          "num_key_value_heads": 2, "intermediate_size": 96, "num_experts_per_tok": 2, "max_position_embeddings": 256,
          "rms_norm_eps": 1e-5, )";
  EXPECT_NO_THROW(read_hf_config(write(dir, "ok.json", base + R"("num_hidden_layers": 2, "num_local_experts": 8})")));
  EXPECT_THAT(error_of([&] {
                read_hf_config(
                    write(dir, "experts.json", base + R"("num_hidden_layers": 2, "num_local_experts": 2147483647})"));
              }),
              HasSubstr("more than the limit of 65536"));
  EXPECT_THAT(
      error_of([&] {
        read_hf_config(write(dir, "layers.json", base + R"("num_hidden_layers": 2147483647, "num_local_experts": 8})"));
      }),
      HasSubstr("'num_hidden_layers' is 2147483647, more than the limit of 4096"));
  std::string big = base + R"("num_hidden_layers": 2, "num_local_experts": 8, "padding": [)";
  while (big.size() < (2u << 20)) big += "0,";
  big += "0]}";
  EXPECT_THAT(error_of([&] { read_hf_config(write(dir, "big.json", big)); }),
              HasSubstr("more than the limit of 1048576 bytes"));
}

TEST(MemoryBudget, RefusesWithNeedAndAvailable) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1.5 * 1024 * 1024), "1.5 MiB");
  const uint64_t available = available_memory_bytes();
  EXPECT_GT(available, 0u);
  EXPECT_NO_THROW(require_memory("small", 1024));
  EXPECT_THAT(error_of([] { require_memory("the tokens of x.h5", 1e30); }),
              testing::MatchesRegex("the tokens of x.h5: need .* available .*"));
  setenv("MOE_MEMORY_LIMIT", "1048576", 1);
  EXPECT_EQ(available_memory_bytes(), 1048576u);
  EXPECT_THAT(error_of([] { require_memory("two MiB", 2.0 * 1024 * 1024); }),
              HasSubstr("two MiB: need 2.0 MiB, available 1.0 MiB"));
  unsetenv("MOE_MEMORY_LIMIT");
  EXPECT_EQ(available_memory_bytes(), available_memory_bytes());
}

}  // namespace
}  // namespace moe::test
