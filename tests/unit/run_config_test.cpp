// moe::RunConfig::parse: the run-file contract job scripts rely on. Every key parses, defaults
// hold, --set overrides nested keys without disturbing their siblings, and every bad file is
// rejected with a message that names the source and the offending key or value.
#include "config/run_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.hpp"

namespace moe::test {
namespace {

using testing::HasSubstr;

constexpr const char* kMinimal = "model: m.h5\ninput: t.h5\noutput: s.h5\n";

constexpr const char* kFull = R"(# every key
model: /data/model.h5
input: /data/tokens.h5
output: /scratch/scores.h5
report: /scratch/report.json
batch_size: 4
backend: cuda
threads: 3
progress_seconds: 2.5
parallel:
  tp: 2
  ranks_per_node: 8
moe:
  gating: static
  capacity_factor: 1.5
  alltoall: flat
  dispatch_chunks: 4
)";

RunConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return RunConfig::parse(text, "run.yaml", overrides);
}

// The message of the moe::Error that parse throws ("" and a test failure if it does not throw).
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse(text, overrides);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return "";
}

TEST(RunConfig, ParsesEveryKey) {
  const RunConfig c = parse(kFull);
  EXPECT_EQ(c.model, "/data/model.h5");
  EXPECT_EQ(c.input, "/data/tokens.h5");
  EXPECT_EQ(c.output, "/scratch/scores.h5");
  EXPECT_EQ(c.report, "/scratch/report.json");
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.backend, "cuda");
  EXPECT_EQ(c.threads, 3);
  EXPECT_DOUBLE_EQ(c.progress_seconds, 2.5);
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_EQ(c.parallel.ranks_per_node, 8);
  EXPECT_EQ(c.moe.gating, GatingKind::static_capacity);
  EXPECT_DOUBLE_EQ(c.moe.capacity_factor, 1.5);
  EXPECT_EQ(c.moe.alltoall, AllToAllKind::flat);
  EXPECT_EQ(c.moe.dispatch_chunks, 4);
  EXPECT_STREQ(gating_name(c.moe.gating), "static");
  EXPECT_STREQ(alltoall_name(c.moe.alltoall), "flat");
}

TEST(RunConfig, Defaults) {
  const RunConfig c = parse(kMinimal);
  EXPECT_EQ(c.model, "m.h5");
  EXPECT_EQ(c.input, "t.h5");
  EXPECT_EQ(c.output, "s.h5");
  EXPECT_EQ(c.report, "");
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.backend, "cpu");
  EXPECT_EQ(c.threads, 0);
  EXPECT_DOUBLE_EQ(c.progress_seconds, 10.0);
  EXPECT_EQ(c.parallel.tp, 1);
  EXPECT_EQ(c.parallel.ranks_per_node, 0);  // auto
  EXPECT_EQ(c.moe.gating, GatingKind::dynamic);
  EXPECT_DOUBLE_EQ(c.moe.capacity_factor, 1.25);
  EXPECT_EQ(c.moe.alltoall, AllToAllKind::hierarchical);
  EXPECT_EQ(c.moe.dispatch_chunks, 2);
  EXPECT_STREQ(gating_name(c.moe.gating), "dynamic");
  EXPECT_STREQ(alltoall_name(c.moe.alltoall), "hierarchical");
}

TEST(RunConfig, OverridesCreateNestedKeys) {
  // The file has no parallel/moe sections: the overrides make them.
  const RunConfig c = parse(kMinimal, {"moe.gating=static", "parallel.tp=2", "batch_size=16"});
  EXPECT_EQ(c.moe.gating, GatingKind::static_capacity);
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_EQ(c.batch_size, 16);
  EXPECT_DOUBLE_EQ(c.moe.capacity_factor, 1.25);
  EXPECT_EQ(c.parallel.ranks_per_node, 0);
}

TEST(RunConfig, OverridesReplaceValuesAndKeepSiblings) {
  const RunConfig c = parse(kFull, {"moe.gating=dynamic", "parallel.tp=4", "batch_size=16", "model=other.h5"});
  EXPECT_EQ(c.moe.gating, GatingKind::dynamic);
  EXPECT_EQ(c.parallel.tp, 4);
  EXPECT_EQ(c.batch_size, 16);
  EXPECT_EQ(c.model, "other.h5");
  // Siblings of the overridden keys are untouched.
  EXPECT_DOUBLE_EQ(c.moe.capacity_factor, 1.5);
  EXPECT_EQ(c.moe.alltoall, AllToAllKind::flat);
  EXPECT_EQ(c.parallel.ranks_per_node, 8);
  EXPECT_EQ(c.input, "/data/tokens.h5");
}

TEST(RunConfig, LaterOverrideWins) {
  EXPECT_EQ(parse(kMinimal, {"batch_size=16", "batch_size=3"}).batch_size, 3);
}

TEST(RunConfig, EffectiveYamlHoldsTheOverridesAndParsesBack) {
  const RunConfig c = parse(kFull, {"moe.gating=dynamic", "parallel.tp=4", "batch_size=16"});
  EXPECT_THAT(c.effective_yaml, HasSubstr("gating: dynamic"));
  const RunConfig again = RunConfig::parse(c.effective_yaml, "effective", {});
  EXPECT_EQ(again.model, c.model);
  EXPECT_EQ(again.input, c.input);
  EXPECT_EQ(again.output, c.output);
  EXPECT_EQ(again.report, c.report);
  EXPECT_EQ(again.batch_size, 16);
  EXPECT_EQ(again.backend, c.backend);
  EXPECT_EQ(again.threads, c.threads);
  EXPECT_DOUBLE_EQ(again.progress_seconds, c.progress_seconds);
  EXPECT_EQ(again.parallel.tp, 4);
  EXPECT_EQ(again.parallel.ranks_per_node, c.parallel.ranks_per_node);
  EXPECT_EQ(again.moe.gating, GatingKind::dynamic);
  EXPECT_DOUBLE_EQ(again.moe.capacity_factor, c.moe.capacity_factor);
  EXPECT_EQ(again.moe.alltoall, c.moe.alltoall);
}

TEST(RunConfig, UnknownTopLevelKeyIsNamed) {
  const std::string msg = error_of(std::string(kMinimal) + "batchsize: 4\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("unknown key 'batchsize'"));
}

TEST(RunConfig, UnknownNestedKeyIsNamedWithItsPath) {
  std::string msg = error_of(std::string(kMinimal) + "moe:\n  gating: static\n  gate: static\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("unknown key 'moe.gate'"));
  msg = error_of(std::string(kMinimal) + "parallel:\n  ep: 2\n");
  EXPECT_THAT(msg, HasSubstr("unknown key 'parallel.ep'"));
}

TEST(RunConfig, UnknownOverrideKeyIsNamed) {
  std::string msg = error_of(kMinimal, {"moe.gatng=static"});
  EXPECT_THAT(msg, HasSubstr("unknown key 'moe.gatng'"));
  msg = error_of(kMinimal, {"bogus=1"});
  EXPECT_THAT(msg, HasSubstr("unknown key 'bogus'"));
}

TEST(RunConfig, OverrideWithAMappingIsCheckedKeyByKey) {
  const RunConfig c = parse(kMinimal, {"moe={gating: static, alltoall: flat}"});
  EXPECT_EQ(c.moe.gating, GatingKind::static_capacity);
  EXPECT_EQ(c.moe.alltoall, AllToAllKind::flat);
  EXPECT_THAT(error_of(kMinimal, {"moe={gating: static, gate: 1}"}), HasSubstr("unknown key 'moe.gate'"));
}

// A section key given a plain value would otherwise be ignored silently (its keys keep their
// defaults), so it is an error.
TEST(RunConfig, SectionGivenAValueIsRejected) {
  std::string msg = error_of(std::string(kMinimal) + "moe: static\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("'moe' must be a mapping"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "parallel: 2\n"), HasSubstr("'parallel' must be a mapping"));
  EXPECT_THAT(error_of(kMinimal, {"parallel=2"}), HasSubstr("'parallel' must be a mapping"));
  // An empty section is fine: its keys take their defaults.
  const RunConfig c = parse(std::string(kMinimal) + "moe:\nparallel:\n");
  EXPECT_EQ(c.moe.gating, GatingKind::dynamic);
  EXPECT_EQ(c.parallel.tp, 1);
  EXPECT_EQ(parse(std::string(kMinimal) + "moe:\n", {"moe.gating=static"}).moe.gating, GatingKind::static_capacity);
}

// yaml-cpp accepts a repeated key and keeps one of the values; a run file must not be ambiguous.
TEST(RunConfig, RepeatedKeysAreRejected) {
  std::string msg = error_of(std::string(kMinimal) + "batch_size: 4\nbatch_size: 16\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("'batch_size' appears twice"));
  msg = error_of(std::string(kMinimal) + "moe:\n  gating: static\n  gating: dynamic\n");
  EXPECT_THAT(msg, HasSubstr("'moe.gating' appears twice"));
}

TEST(RunConfig, OverrideWithoutEqualsSignIsRejected) {
  EXPECT_THAT(error_of(kMinimal, {"batch_size"}), HasSubstr("expected key=value"));
  EXPECT_THAT(error_of(kMinimal, {"=4"}), HasSubstr("expected key=value"));
}

TEST(RunConfig, OverrideValuesAreValidatedLikeFileValues) {
  EXPECT_THAT(error_of(kMinimal, {"moe.gating=foo"}), HasSubstr("'moe.gating' is 'foo'"));
  EXPECT_THAT(error_of(kMinimal, {"batch_size=0"}), HasSubstr("'batch_size' must be positive"));
}

TEST(RunConfig, MalformedYamlNamesTheSourceAndLine) {
  // Line 3 is indented under a scalar.
  std::string msg = error_of("model: m.h5\ninput: t.h5\n  output: s.h5\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("malformed YAML"));
  EXPECT_THAT(msg, HasSubstr("line 3"));
  // Line 4 starts a list inside a mapping.
  msg = error_of(std::string(kMinimal) + "- batch_size\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("line 4"));
}

TEST(RunConfig, NotAMappingIsRejected) {
  EXPECT_THAT(error_of("- model\n- input\n"), HasSubstr("must be a YAML mapping"));
  EXPECT_THAT(error_of("just text\n"), HasSubstr("must be a YAML mapping"));
}

TEST(RunConfig, BatchSizeMustBePositive) {
  std::string msg = error_of(std::string(kMinimal) + "batch_size: 0\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("'batch_size' must be positive, got 0"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "batch_size: -3\n"), HasSubstr("got -3"));
  msg = error_of(std::string(kMinimal) + "batch_size: lots\n");
  EXPECT_THAT(msg, HasSubstr("'batch_size'"));
  EXPECT_THAT(msg, HasSubstr("'lots'"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "batch_size: [1, 2]\n"),
              HasSubstr("'batch_size' must be a single value"));
}

TEST(RunConfig, UnknownGatingListsTheValidOnes) {
  const std::string msg = error_of(std::string(kMinimal) + "moe:\n  gating: foo\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("'moe.gating' is 'foo'"));
  EXPECT_THAT(msg, HasSubstr("dynamic"));
  EXPECT_THAT(msg, HasSubstr("static"));
}

TEST(RunConfig, UnknownAllToAllListsTheValidOnes) {
  const std::string msg = error_of(std::string(kMinimal) + "moe:\n  alltoall: ring\n");
  EXPECT_THAT(msg, HasSubstr("'moe.alltoall' is 'ring'"));
  EXPECT_THAT(msg, HasSubstr("flat"));
  EXPECT_THAT(msg, HasSubstr("hierarchical"));
}

TEST(RunConfig, RanksPerNodeIsAutoOrPositive) {
  EXPECT_EQ(parse(std::string(kMinimal) + "parallel:\n  ranks_per_node: auto\n").parallel.ranks_per_node, 0);
  EXPECT_EQ(parse(std::string(kMinimal) + "parallel:\n  ranks_per_node: 4\n").parallel.ranks_per_node, 4);
  EXPECT_EQ(parse(kMinimal, {"parallel.ranks_per_node=6"}).parallel.ranks_per_node, 6);
  std::string msg = error_of(std::string(kMinimal) + "parallel:\n  ranks_per_node: -1\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("'parallel.ranks_per_node' must be 'auto' or positive, got '-1'"));
  msg = error_of(std::string(kMinimal) + "parallel:\n  ranks_per_node: many\n");
  EXPECT_THAT(msg, HasSubstr("'parallel.ranks_per_node'"));
  EXPECT_THAT(msg, HasSubstr("'many'"));
}

TEST(RunConfig, OtherBadValuesAreNamed) {
  EXPECT_THAT(error_of(std::string(kMinimal) + "parallel:\n  tp: 0\n"), HasSubstr("'parallel.tp' must be positive"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "threads: -1\n"), HasSubstr("'threads' must be >= 0"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "progress_seconds: -1\n"), HasSubstr("'progress_seconds'"));
  for (const char* chunks : {"0", "65", "-1"})
    EXPECT_THAT(error_of(std::string(kMinimal) + "moe:\n  dispatch_chunks: " + chunks + "\n"),
                HasSubstr("'moe.dispatch_chunks' must be in [1, 64], got " + std::string(chunks)));
  EXPECT_THAT(error_of(std::string(kMinimal) + "moe:\n  dispatch_chunks: two\n"), HasSubstr("moe.dispatch_chunks"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "moe:\n  capacity_factor: 0\n"),
              HasSubstr("'moe.capacity_factor' must be positive"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "moe:\n  capacity_factor: .inf\n"),
              HasSubstr("'moe.capacity_factor' must be positive"));
}

TEST(RunConfig, MissingRequiredKeysAreNamed) {
  std::string msg = error_of("input: t.h5\noutput: s.h5\n");
  EXPECT_THAT(msg, HasSubstr("run.yaml"));
  EXPECT_THAT(msg, HasSubstr("missing key 'model'"));
  EXPECT_THAT(error_of("model: m.h5\noutput: s.h5\n"), HasSubstr("missing key 'input'"));
  EXPECT_THAT(error_of("model: m.h5\ninput: t.h5\n"), HasSubstr("missing key 'output'"));
  EXPECT_THAT(error_of(""), HasSubstr("missing key 'model'"));
  // An override can supply a missing key.
  EXPECT_EQ(parse("input: t.h5\noutput: s.h5\n", {"model=m.h5"}).model, "m.h5");
}

TEST(RunConfig, TraceAndExpertCacheKeys) {
  const RunConfig c = parse(std::string(kMinimal) +
                            "moe:\n  trace: true\n  trace_topk: true\n  expert_cache:\n    slots: 25%\n"
                            "    policy: belady\n    trace: old.h5\n");
  EXPECT_TRUE(c.moe.trace);
  EXPECT_TRUE(c.moe.trace_topk);
  EXPECT_EQ(c.moe.expert_cache.slots, "25%");
  EXPECT_EQ(c.moe.expert_cache.policy, "belady");
  EXPECT_EQ(c.moe.expert_cache.trace, "old.h5");
  const RunConfig d = parse(kMinimal);
  EXPECT_FALSE(d.moe.trace);
  EXPECT_EQ(d.moe.expert_cache.slots, "all");
  EXPECT_EQ(d.moe.expert_cache.policy, "lifo");
  EXPECT_THAT(error_of(std::string(kMinimal) + "moe:\n  trace_topk: true\n"),
              HasSubstr("'moe.trace_topk' needs 'moe.trace: true'"));
  EXPECT_THAT(error_of(kMinimal, {"moe.expert_cache.slots=0"}), HasSubstr("at least 1 expert must be resident"));
  EXPECT_THAT(error_of(kMinimal, {"moe.expert_cache.slots=150%"}), HasSubstr("a percentage must be in (0, 100]"));
}

TEST(RunConfig, CacheSlotsParse) {
  EXPECT_TRUE(parse_cache_slots("all", "s").all);
  EXPECT_EQ(parse_cache_slots("3", "s").count, 3);
  EXPECT_DOUBLE_EQ(parse_cache_slots("12.5%", "s").percent, 12.5);
  for (const std::string bad : {"", "0", "1.5", "-2", "0%", "101%", "x%", "%", "3 experts"}) {
    try {
      parse_cache_slots(bad, "slots");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_THAT(std::string(e.what()), HasSubstr("slots is '" + bad + "'"));
    }
  }
}

}  // namespace
}  // namespace moe::test
