// The bounded expert store (moe.expert_cache.slots) against the resident store: for Mixtral and
// PR-MoE, on 1, 2 and 4 ranks, slots 1, 2 and 25% with every policy (belady with the trace of an
// earlier run of the same input) give logprobs equal bit for bit to the resident run of the same
// layout (the compute order is unchanged), and slots "all" is the resident store; also bf16
// weights with each expert sliced over two ranks. The report's
// cache figures are checked too: on one rank each MoE layer's hits + misses equal the trace's
// active experts summed over batches (read here with plain HDF5), the slots hold no more than
// `slots` experts, and a cache smaller than the local experts keeps fewer expert bytes resident.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support/h5_read.hpp"
#include "support/process.hpp"
#include "support/report.hpp"

namespace moe::test {
namespace {

struct Family {
  std::string name;        // test name
  std::string spec;        // inputs/models/<spec>-tiny.yaml
  std::string synth_args;  // extra moe-synth model arguments
  std::vector<int> ranks;
};

class ExpertStoreParity : public testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<ScratchDir>("expert-store-" + GetParam().name);
    const auto m =
        run_command(program("moe-synth") + " model " + input_file("models/" + GetParam().spec + "-tiny.yaml") + " " +
                    file("model.h5") + " " + GetParam().synth_args + " --seed " + seed());
    ASSERT_EQ(m.exit_code, 0) << m.output;
    // Topic runs make consecutive batches reuse experts, so caches hit as well as miss.
    const auto t =
        run_command(program("moe-synth") + " tokens " + file("tokens.h5") +
                    " --vocab 512 --num-seqs 20 --min-len 4 --max-len 24 --topics 4 --topic-run 4 --seed " + seed());
    ASSERT_EQ(t.exit_code, 0) << t.output;
  }
  // Fresh inputs every run.
  static std::string seed() {
    static const std::string s = std::to_string(testing::UnitTest::GetInstance()->random_seed() + ::getpid() % 1000);
    return s;
  }
  std::string file(const std::string& name) const { return dir_->file(name); }
  // Runs moe-score; returns the results file.
  std::string score(const std::string& tag, int ranks, const std::string& cache_keys, bool trace = false) {
    const std::string out = file(tag + ".h5");
    const std::string extra =
        "batch_size: 2\nreport: " + file(tag + ".json") + "\nmoe:\n" + (trace ? "  trace: true\n" : "") + cache_keys;
    const auto r = run_command("timeout 120 " + mpirun(ranks) + program("moe-score") + " " +
                               write_run_file(*dir_, file("model.h5"), file("tokens.h5"), out, extra));
    EXPECT_EQ(r.exit_code, 0) << tag << "\n" << r.output;
    return out;
  }
  std::unique_ptr<ScratchDir> dir_;
};

// Bit-for-bit equality of two results' logprobs (NaN where both are NaN).
void expect_same_bits(const std::string& a_path, const std::string& b_path, const std::string& what) {
  const Array a = read_array(a_path, "logprobs"), b = read_array(b_path, "logprobs");
  ASSERT_EQ(a.values.size(), b.values.size()) << what;
  EXPECT_LE(max_abs_diff(a, b), 1e-6) << what;
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    const float x = static_cast<float>(a.values[i]), y = static_cast<float>(b.values[i]);
    differ += std::memcmp(&x, &y, sizeof(float)) != 0 ? 1 : 0;
  }
  EXPECT_EQ(differ, 0u) << what << ": logprobs differ in bits from the resident store's";
}

// prefix + ranks (appended: GCC 12's -Wrestrict misfires on "literal" + std::string here).
std::string with_ranks(std::string prefix, int ranks) {
  prefix.append(std::to_string(ranks));
  return prefix;
}

// Sum over the trace's batches of each MoE layer's active experts.
int64_t trace_requests(const std::string& path, int64_t layer) {
  const Array rows = read_array(path, "trace/layer_" + std::to_string(layer) + "/expert_rows");
  int64_t n = 0;
  for (double v : rows.values) n += v > 0 ? 1 : 0;
  return n;
}

TEST_P(ExpertStoreParity, EverySlotsAndPolicyEqualsTheResidentStore) {
  const std::string trace = score("trace", 1, "", true);
  const nlohmann::json resident1 = read_report(file("trace.json"));
  for (const int ranks : GetParam().ranks) {
    const std::string resident = ranks == 1 ? trace : score(with_ranks("resident", ranks), ranks, "");
    const nlohmann::json resident_report =
        read_report(file((ranks == 1 ? std::string("trace") : with_ranks("resident", ranks)) + ".json"));
    for (const std::string slots : {"1", "2", "25%", "all"}) {
      for (const std::string policy : {"lifo", "lru", "belady"}) {
        if (slots == "all" && policy != "lifo") continue;  // all: the resident store, whatever the policy
        std::string tag = with_ranks("r", ranks);
        tag += slots == "25%" ? std::string("_q") : "_s" + slots;
        tag += "_" + policy;
        SCOPED_TRACE(tag);
        const std::string keys = "  expert_cache:\n    slots: " + (slots == "25%" ? "\"25%\"" : slots) +
                                 "\n    policy: " + policy + "\n" +
                                 (policy == "belady" ? "    trace: " + trace + "\n" : "");
        const std::string out = score(tag, ranks, keys);
        expect_same_bits(resident, out, tag);
        const nlohmann::json report = read_report(file(tag + ".json"));
        for (std::size_t l = 0; l < report["moe_layers"].size(); ++l) {
          const nlohmann::json& layer = report["moe_layers"][l];
          if (slots == "all") {
            EXPECT_FALSE(layer.contains("expert_cache"));
            continue;
          }
          ASSERT_TRUE(layer.contains("expert_cache"));
          const nlohmann::json& c = layer["expert_cache"];
          const int64_t requests = c["hits"].get<int64_t>() + c["misses"].get<int64_t>();
          EXPECT_GT(c["misses"].get<int64_t>(), 0);
          EXPECT_EQ(c["bytes_loaded"].get<int64_t>() % c["misses"].get<int64_t>(), 0);
          if (ranks == 1) {
            EXPECT_EQ(requests, trace_requests(trace, layer["layer"].get<int64_t>()));
          }
          const int64_t experts = layer["experts"].get<int64_t>();
          const int64_t want = slots == "25%" ? (experts + 3) / 4 : std::stoll(slots);
          for (const auto& s : c["slots_per_rank"]) EXPECT_LE(s.get<int64_t>(), want);
        }
        const auto bytes = report["memory"]["expert_bytes_per_rank"];
        const auto full = resident_report["memory"]["expert_bytes_per_rank"];
        for (std::size_t r = 0; r < bytes.size(); ++r) {
          if (slots == "all")
            EXPECT_EQ(bytes[r], full[r]);
          else
            EXPECT_LE(bytes[r].get<double>(), full[r].get<double>());
        }
        if (ranks == 1 && slots == "1") {  // one expert per MoE layer of several: far less resident
          EXPECT_LT(bytes[0].get<double>(), 0.5 * resident1["memory"]["expert_bytes_per_rank"][0].get<double>());
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, ExpertStoreParity,
    testing::Values(
        Family{"mixtral", "mixtral", "--set num_experts=8 --topics 4 --topic-experts 2 --topic-boost 8", {1, 2, 4}},
        Family{"prmoe", "prmoe", "", {1, 2, 4}},
        // bf16 as stored, each expert sliced over 2 of 4 ranks (down's columns read row by row).
        Family{"mixtral_bf16_sliced", "mixtral", "--dtype bf16 --set num_experts=2", {4}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace moe::test

namespace moe::test {
namespace {

// The I/O thread reads expert blocks at offsets mapped from HDF5 metadata: a contiguous layout
// (H5Dget_offset) gives the chunked layout's bits; a compressed one is refused in one line.
TEST(ExpertStoreLayouts, ContiguousReadsAndCompressedIsRefused) {
  ScratchDir dir("expert-store-layouts");
  const std::string model = dir.file("model.h5"), tokens = dir.file("tokens.h5");
  ASSERT_EQ(run_command(program("moe-synth") + " model " + input_file("models/mixtral-tiny.yaml") + " " + model +
                        " --seed 11")
                .exit_code,
            0);
  ASSERT_EQ(run_command(program("moe-synth") + " tokens " + tokens + " --vocab 512 --num-seqs 6 --max-len 16 --seed 12")
                .exit_code,
            0);
  ASSERT_EQ(run_command("h5repack -l CONTI " + model + " " + dir.file("conti.h5")).exit_code, 0);
  ASSERT_EQ(run_command("h5repack -f GZIP=1 " + model + " " + dir.file("gzip.h5")).exit_code, 0);
  const auto run = [&](const std::string& m, const std::string& out, const std::string& slots) {
    return run_command("timeout 120 " + mpirun(1) + program("moe-score") + " " +
                       write_run_file(dir, m, tokens, dir.file(out),
                                      "batch_size: 2\nmoe:\n  expert_cache:\n    slots: " + slots + "\n"));
  };
  const auto resident = run(model, "resident.h5", "all");
  ASSERT_EQ(resident.exit_code, 0) << resident.output;
  const auto conti = run(dir.file("conti.h5"), "conti.h5.out", "1");
  ASSERT_EQ(conti.exit_code, 0) << conti.output;
  expect_same_bits(dir.file("resident.h5"), dir.file("conti.h5.out"), "contiguous layout");
  const auto gzip = run(dir.file("gzip.h5"), "gzip.h5.out", "1");
  EXPECT_EQ(gzip.exit_code, 1) << gzip.output;
  EXPECT_THAT(gzip.output, testing::HasSubstr("neither contiguous nor one uncompressed chunk per expert"));
  EXPECT_THAT(gzip.output, testing::HasSubstr("gate_proj"));
}

}  // namespace
}  // namespace moe::test

namespace moe::test {
namespace {

// mmap_weights: true uses weights in place in the mapped checkpoint (whole experts and whole
// matrices; tp's column slices and expert slicing's down_proj slices are still read). The
// results are those of mmap_weights: false in every layout, for swiglu (Mixtral, f32 and bf16)
// and gelu (PR-MoE): to 1e-5 as f32 layouts (a mapped swiglu expert's gate and up are two GEMMs
// instead of one, and OpenBLAS may round those in other last bits), bit for bit for PR-MoE
// (nothing computed otherwise) and for bf16 on the row-invariant kernel (each element one FMA
// chain whatever the shape). The report counts the mapped bytes; the model checksum is the same.
struct MappedCase {
  std::string name, spec, synth_args, keys;
  int ranks;
};

class MappedWeights : public testing::TestWithParam<MappedCase> {};

TEST_P(MappedWeights, GiveTheAnswerOfReadWeights) {
  const MappedCase& p = GetParam();
  ScratchDir dir("mapped-weights-" + p.name);
  const std::string seed = std::to_string(testing::UnitTest::GetInstance()->random_seed() + ::getpid() % 1000);
  SCOPED_TRACE("seed " + seed);
  const std::string model = dir.file("model.h5"), tokens = dir.file("tokens.h5");
  const auto m = run_command(program("moe-synth") + " model " + input_file("models/" + p.spec + "-tiny.yaml") + " " +
                             model + " " + p.synth_args + " --seed " + seed);
  ASSERT_EQ(m.exit_code, 0) << m.output;
  const auto t = run_command(program("moe-synth") + " tokens " + tokens +
                             " --vocab 512 --num-seqs 12 --min-len 4 --max-len 24 --seed " + seed);
  ASSERT_EQ(t.exit_code, 0) << t.output;
  const auto score = [&](const std::string& tag, bool map) {
    const std::string extra = "batch_size: 3\nreport: " + dir.file(tag + ".json") +
                              "\nmmap_weights: " + (map ? "true" : "false") + "\n" + p.keys;
    const auto r = run_command("timeout 120 " + mpirun(p.ranks) + program("moe-score") + " " +
                               write_run_file(dir, model, tokens, dir.file(tag + ".h5"), extra));
    EXPECT_EQ(r.exit_code, 0) << tag << "\n" << r.output;
    return read_report(dir.file(tag + ".json"));
  };
  const nlohmann::json read = score("read", false), mapped = score("mapped", true);
  const std::string kernel = mapped["kernels"]["bf16_gemm"].get<std::string>();
  if (p.spec == "prmoe" || (p.synth_args.find("bf16") != std::string::npos && kernel.rfind("row-invariant", 0) == 0)) {
    expect_same_bits(dir.file("read.h5"), dir.file("mapped.h5"), "mmap_weights true against false");
  } else {
    const Array a = read_array(dir.file("read.h5"), "logprobs"), b = read_array(dir.file("mapped.h5"), "logprobs");
    ASSERT_EQ(a.values.size(), b.values.size());
    EXPECT_LE(max_abs_diff(a, b), 1e-5) << "mmap_weights true against false";
  }
  EXPECT_EQ(read_string_attribute(dir.file("read.h5"), "model_checksum"),
            read_string_attribute(dir.file("mapped.h5"), "model_checksum"));
  EXPECT_EQ(read["memory"]["mapped_weight_bytes_max_over_ranks"].get<double>(), 0.0);
  EXPECT_GT(mapped["memory"]["mapped_weight_bytes_max_over_ranks"].get<double>(), 0.0);
  // The same weights in use either way: mapped or in backend memory.
  EXPECT_EQ(read["memory"]["weight_bytes_max_over_ranks"], mapped["memory"]["weight_bytes_max_over_ranks"]);
  EXPECT_EQ(read["memory"]["expert_bytes_per_rank"], mapped["memory"]["expert_bytes_per_rank"]);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, MappedWeights,
    testing::Values(MappedCase{"mixtral_1", "mixtral", "", "", 1},
                    MappedCase{"mixtral_ep4", "mixtral", "--set num_experts=8", "", 4},
                    MappedCase{"mixtral_tp2", "mixtral", "", "parallel:\n  tp: 2\n", 2},
                    // 2 experts on 4 ranks: each expert sliced over two (down_proj read, not mapped).
                    MappedCase{"mixtral_bf16_sliced", "mixtral", "--dtype bf16 --set num_experts=2", "", 4},
                    MappedCase{"prmoe_2", "prmoe", "", "", 2}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace moe::test
