// moe-convert must refuse a bad Hugging Face folder before writing anything: one line
// "moe-convert: error: ..." naming the file and the tensor (or key), exit code 1, no output file
// left behind. Each test starts from a valid tiny Mixtral folder (tests/support/hf_tiny.py) and
// breaks one thing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/hf_fixture.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

constexpr const char* kPrefix = "moe-convert: error:";
constexpr const char* kQProj = "model.layers.0.self_attn.q_proj.weight";  // what --mutate breaks

class HfConvertErrors : public testing::Test {
 protected:
  // Writes a tiny Mixtral folder (optionally broken by hf_tiny.py --mutate); returns its path.
  std::string folder(const std::string& extra = "") {
    const std::string hf = dir_.file("hf");
    const CommandResult r =
        run_command(hf_tiny() + " write mixtral " + hf + " --seed " + std::to_string(std::random_device{}()) + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return hf;
  }
  CommandResult convert(const std::string& hf) const {
    return run_command("timeout -k 10 60 " + program("moe-convert") + " " + hf + " " + out());
  }
  std::string out() const { return dir_.file("model.h5"); }

  // The contract of a refusal; returns the error line ("" unless there is exactly one).
  std::string rejection(const CommandResult& r) const {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, testing::Not(HasSubstr("HDF5-DIAG")));
    EXPECT_THAT(r.output, testing::Not(HasSubstr("terminate called")));
    EXPECT_FALSE(fs::exists(out())) << "a refused conversion must leave no output";
    std::vector<std::string> lines;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);)
      if (line.rfind(kPrefix, 0) == 0) lines.push_back(line);
    EXPECT_EQ(lines.size(), 1u) << r.output;
    return lines.size() == 1 ? lines[0] : "";
  }

  ScratchDir dir_{"hf-errors"};
};

TEST_F(HfConvertErrors, ValidFolderConverts) {
  const CommandResult r = convert(folder());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out()));
}

TEST_F(HfConvertErrors, TruncatedFile) {
  const std::string file = folder() + "/model.safetensors";
  fs::resize_file(file, fs::file_size(file) - 100);  // the last tensor (lm_head) loses its end
  const std::string line = rejection(convert(dir_.file("hf")));
  EXPECT_THAT(line, HasSubstr(file));
  EXPECT_THAT(line, HasSubstr("'lm_head.weight'"));
  EXPECT_THAT(line, HasSubstr("truncated"));
}

TEST_F(HfConvertErrors, HeaderLengthPastTheEnd) {
  const std::string file = folder() + "/model.safetensors";
  const uint64_t past = fs::file_size(file);  // 8 + past > file size
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((past >> (8 * i)) & 0xff));
  f.close();
  const std::string line = rejection(convert(dir_.file("hf")));
  EXPECT_THAT(line, HasSubstr(file));
  EXPECT_THAT(line, HasSubstr("header length " + std::to_string(past) + " points past the end"));
}

TEST_F(HfConvertErrors, UnsupportedDtype) {
  const std::string hf = folder(" --mutate f64");
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(hf + "/model.safetensors"));
  EXPECT_THAT(line, HasSubstr(std::string("tensor '") + kQProj + "' has dtype 'F64'"));
}

TEST_F(HfConvertErrors, MissingTensor) {
  const std::string hf = folder(" --mutate missing");
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(hf + "/model.safetensors"));
  EXPECT_THAT(line, HasSubstr(std::string("tensor '") + kQProj + "' is missing"));
}

TEST_F(HfConvertErrors, MissingTensorInShardedFolder) {
  const std::string hf = folder(" --mutate missing --shards 2");
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(hf + "/model.safetensors.index.json"));
  EXPECT_THAT(line, HasSubstr(std::string("tensor '") + kQProj + "' is missing"));
}

TEST_F(HfConvertErrors, ShapeDisagreesWithConfig) {
  const std::string hf = folder(" --mutate shape");
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(hf + "/model.safetensors"));
  // hf_tiny's Mixtral: 4 heads x head_dim 16 = 64 rows of hidden size 48; the file has [48, 64].
  EXPECT_THAT(line,
              HasSubstr(std::string("tensor '") + kQProj + "' has shape [48, 64], but config.json implies [64, 48]"));
}

TEST_F(HfConvertErrors, TensorThatConfigDoesNotDescribe) {
  const std::string hf = folder(" --mutate extra");
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(hf + "/model.safetensors"));
  EXPECT_THAT(line, HasSubstr("tensor 'model.layers.0.self_attn.q_norm.weight' is not used by MixtralForCausalLM"));
}

TEST_F(HfConvertErrors, ShardOutsideTheFolder) {
  const std::string hf = folder(" --shards 2");
  const std::string index = hf + "/model.safetensors.index.json";
  std::ifstream in(index);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string shard = "\"model-00002-of-00002.safetensors\"";
  ASSERT_NE(text.find(shard), std::string::npos);
  text.replace(text.find(shard), shard.size(), "\"../model-00002-of-00002.safetensors\"");
  std::ofstream(index) << text;
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(index));
  EXPECT_THAT(line, HasSubstr("not a file in the folder"));
}

TEST_F(HfConvertErrors, UnsupportedConfigKey) {
  const std::string hf = folder();
  const std::string config = hf + "/config.json";
  std::ifstream in(config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string null_scaling = "\"rope_scaling\": null";
  ASSERT_NE(text.find(null_scaling), std::string::npos);
  text.replace(text.find(null_scaling), null_scaling.size(),
               "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
  std::ofstream(config) << text;
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr(config));
  EXPECT_THAT(line, HasSubstr("'rope_scaling'"));
}

TEST_F(HfConvertErrors, UnknownArchitecture) {
  const std::string hf = folder();
  const std::string config = hf + "/config.json";
  std::ifstream in(config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("MixtralForCausalLM"), 18, "LlamaForCausalLM");
  std::ofstream(config) << text;
  const std::string line = rejection(convert(hf));
  EXPECT_THAT(line, HasSubstr("architecture 'LlamaForCausalLM' is not supported"));
}

}  // namespace
}  // namespace moe::test
