// moe::ModelConfig: model specs (YAML, with the layer-layout shorthand) and checkpoint attributes
// parse into the same validated description; the specs shipped in inputs/models/ parse; the
// attribute form round-trips; bad configs are rejected naming the source and the key.
#include "config/model_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

using testing::HasSubstr;

// A valid spec without a layer layout; tests add one.
constexpr const char* kBase = R"(vocab_size: 100
hidden_size: 32
num_layers: 6
num_heads: 4
num_kv_heads: 2
head_dim: 8
max_positions: 64
norm: rmsnorm
norm_eps: 1.0e-5
position: rope
activation: swiglu
dense_ffn: 48
expert_ffn: 24
top_k: 2
router_renormalize: true
)";

ModelConfig from_text(const std::string& text) {
  return ModelConfig::from_yaml(YAML::Load(text), "spec.yaml");
}

std::string error_of(const std::string& text) {
  try {
    from_text(text);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return "";
}

std::string error_of_attrs(const AttrMap& attrs) {
  try {
    ModelConfig::from_attributes(attrs, "model.h5");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "attributes accepted";
  return "";
}

ModelConfig load_spec(const std::string& name) {
  return ModelConfig::from_yaml(YAML::LoadFile(input_file("models/" + name)), name);
}

// Every field, so a round trip that loses one shows which.
void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.family, b.family);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_positions, b.max_positions);
  EXPECT_EQ(a.norm, b.norm);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.activation, b.activation);
  EXPECT_EQ(a.dense_ffn, b.dense_ffn);
  EXPECT_EQ(a.expert_ffn, b.expert_ffn);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.router_renormalize, b.router_renormalize);
  EXPECT_EQ(a.shared_ffn, b.shared_ffn);
  EXPECT_EQ(a.shared_gate, b.shared_gate);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.layer_num_experts, b.layer_num_experts);
  EXPECT_EQ(a.parameter_count(), b.parameter_count());
}

// --- the layer-layout shorthand -------------------------------------------------------------------

TEST(ModelConfig, ShorthandEveryLayer) {
  const ModelConfig c = from_text(std::string(kBase) + "num_experts: 4\n");
  EXPECT_EQ(c.layer_num_experts, (std::vector<int64_t>{4, 4, 4, 4, 4, 4}));
  EXPECT_TRUE(c.is_moe_layer(0));
  EXPECT_EQ(c.num_experts(5), 4);
}

TEST(ModelConfig, ShorthandEverySecondLayer) {
  const ModelConfig c = from_text(std::string(kBase) + "num_experts: 4\nmoe_every: 2\n");
  EXPECT_EQ(c.layer_num_experts, (std::vector<int64_t>{0, 4, 0, 4, 0, 4}));
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
}

TEST(ModelConfig, ShorthandFirstDense) {
  EXPECT_EQ(from_text(std::string(kBase) + "num_experts: 3\nfirst_dense: 2\n").layer_num_experts,
            (std::vector<int64_t>{0, 0, 3, 3, 3, 3}));
  // After `first_dense` dense layers, every `moe_every`-th layer.
  EXPECT_EQ(from_text(std::string(kBase) + "num_experts: 3\nfirst_dense: 1\nmoe_every: 2\n").layer_num_experts,
            (std::vector<int64_t>{0, 0, 3, 0, 3, 0}));
  EXPECT_EQ(from_text(std::string(kBase) + "num_experts: 3\nmoe_every: 3\n").layer_num_experts,
            (std::vector<int64_t>{0, 0, 3, 0, 0, 3}));
}

TEST(ModelConfig, ExplicitLayout) {
  EXPECT_EQ(from_text(std::string(kBase) + "layer_num_experts: [0, 2, 8, 0, 3, 2]\n").layer_num_experts,
            (std::vector<int64_t>{0, 2, 8, 0, 3, 2}));
}

TEST(ModelConfig, ShorthandMoeEveryMustBePositive) {
  const std::string msg = error_of(std::string(kBase) + "num_experts: 4\nmoe_every: 0\n");
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("'moe_every'"));
}

// --- the shipped specs ----------------------------------------------------------------------------

TEST(ModelConfig, MixtralTinySpec) {
  const ModelConfig c = load_spec("mixtral-tiny.yaml");
  EXPECT_EQ(c.family, "mixtral");
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.norm, NormKind::rmsnorm);
  EXPECT_EQ(c.position, PositionKind::rope);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.activation, ActivationKind::swiglu);
  EXPECT_EQ(c.expert_ffn, 96);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_TRUE(c.router_renormalize);
  EXPECT_EQ(c.shared_ffn, 0);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.layer_num_experts, (std::vector<int64_t>{8, 8}));
}

TEST(ModelConfig, Qwen2MoeTinySpec) {
  const ModelConfig c = load_spec("qwen2moe-tiny.yaml");
  EXPECT_EQ(c.family, "qwen2moe");
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_EQ(c.top_k, 4);
  EXPECT_FALSE(c.router_renormalize);
  EXPECT_EQ(c.dense_ffn, 128);
  EXPECT_EQ(c.expert_ffn, 32);
  EXPECT_EQ(c.shared_ffn, 64);
  EXPECT_EQ(c.shared_gate, SharedGateKind::sigmoid);
  EXPECT_EQ(c.layer_num_experts, (std::vector<int64_t>{0, 12, 12}));
}

TEST(ModelConfig, OlmoeTinySpecHasQkNorm) {
  const ModelConfig c = load_spec("olmoe-tiny.yaml");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(load_spec("mixtral-tiny.yaml").qk_norm);  // absent key: off
}

TEST(ModelConfig, PrMoeTinySpec) {
  const ModelConfig c = load_spec("prmoe-tiny.yaml");
  EXPECT_EQ(c.family, "prmoe");
  EXPECT_EQ(c.norm, NormKind::layernorm);
  EXPECT_EQ(c.position, PositionKind::learned);
  EXPECT_EQ(c.activation, ActivationKind::gelu);
  EXPECT_EQ(c.top_k, 1);
  EXPECT_EQ(c.shared_ffn, 128);
  EXPECT_EQ(c.shared_gate, SharedGateKind::none);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.layer_num_experts, (std::vector<int64_t>{0, 4, 0, 8}));
  EXPECT_EQ(c.mlp_in_rows(128), 128);  // gelu: no gate
}

// --- attributes -----------------------------------------------------------------------------------

TEST(ModelConfig, AttributesRoundTrip) {
  for (const char* name : {"mixtral-tiny.yaml", "qwen2moe-tiny.yaml", "prmoe-tiny.yaml", "olmoe-tiny.yaml"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = load_spec(name);
    const AttrMap attrs = c.to_attributes();
    EXPECT_EQ(std::get<std::string>(attrs.at("format")), "moebatch-checkpoint");
    EXPECT_EQ(std::get<int64_t>(attrs.at("format_version")), 1);
    const ModelConfig back = ModelConfig::from_attributes(attrs, "model.h5");
    expect_same(back, c);
    EXPECT_EQ(back.to_attributes(), attrs);
  }
}

TEST(ModelConfig, AttributesRejectWrongFormat) {
  AttrMap attrs = load_spec("mixtral-tiny.yaml").to_attributes();
  attrs["format"] = std::string("something-else");
  EXPECT_THAT(error_of_attrs(attrs), HasSubstr("'format'"));
  attrs = load_spec("mixtral-tiny.yaml").to_attributes();
  attrs["format_version"] = int64_t{2};
  EXPECT_THAT(error_of_attrs(attrs), HasSubstr("format_version 2"));
  attrs = load_spec("mixtral-tiny.yaml").to_attributes();
  attrs["hidden_size"] = std::string("big");
  EXPECT_THAT(error_of_attrs(attrs), HasSubstr("'hidden_size' must be an integer"));
}

// --- rejections -----------------------------------------------------------------------------------

TEST(ModelConfig, NumHeadsNotAMultipleOfKvHeads) {
  std::string text = std::string(kBase) + "num_experts: 4\n";
  text.replace(text.find("num_kv_heads: 2"), 15, "num_kv_heads: 3");
  const std::string msg = error_of(text);
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("num_heads 4 is not a multiple of num_kv_heads 3"));
}

TEST(ModelConfig, LayerWithFewerExpertsThanTopK) {
  const std::string msg = error_of(std::string(kBase) + "layer_num_experts: [0, 4, 0, 1, 0, 4]\n");
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("layer 3 has 1 experts, fewer than top_k 2"));
}

TEST(ModelConfig, UnknownNormListsTheValidOnes) {
  std::string text = std::string(kBase) + "num_experts: 4\n";
  text.replace(text.find("norm: rmsnorm"), 13, "norm: batchnorm");
  const std::string msg = error_of(text);
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("'norm' has unknown value 'batchnorm'"));
  EXPECT_THAT(msg, HasSubstr("rmsnorm"));
  EXPECT_THAT(msg, HasSubstr("layernorm"));
}

TEST(ModelConfig, UnknownKeyIsNamed) {
  const std::string msg = error_of(std::string(kBase) + "num_experts: 4\nrouter_jitter: 0.1\n");
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("'router_jitter'"));
}

TEST(ModelConfig, MissingVocabSizeIsNamed) {
  std::string text = std::string(kBase) + "num_experts: 4\n";
  text.erase(text.find("vocab_size: 100\n"), 16);
  const std::string msg = error_of(text);
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("missing attribute 'vocab_size'"));
}

// A negative first_dense would shift the MoE layers (with moe_every 2 and first_dense -1 the MoE
// layers become 0, 2, ... instead of 1, 3, ...) without a word.
TEST(ModelConfig, ShorthandFirstDenseMustNotBeNegative) {
  const std::string msg = error_of(std::string(kBase) + "num_experts: 4\nmoe_every: 2\nfirst_dense: -1\n");
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("'first_dense'"));
}

// yaml-cpp accepts a repeated key; from_yaml keeps the last value, so a spec that says top_k twice
// is ambiguous and must be rejected, as the run file does ("key '...' appears twice").
TEST(ModelConfig, RepeatedKeyIsRejected) {
  const std::string msg = error_of(std::string(kBase) + "num_experts: 4\ntop_k: 4\n");
  EXPECT_THAT(msg, HasSubstr("spec.yaml"));
  EXPECT_THAT(msg, HasSubstr("'top_k'"));
}

TEST(ModelConfig, OtherInvalidValuesAreNamed) {
  const std::string base = std::string(kBase) + "num_experts: 4\n";
  EXPECT_THAT(error_of(base + "shared_gate: sigmoid\n"), HasSubstr("'shared_gate'"));
  EXPECT_THAT(error_of(std::string(kBase) + "layer_num_experts: [4, 4]\n"), HasSubstr("'layer_num_experts'"));
  EXPECT_THAT(error_of(std::string(kBase) + "layer_num_experts: [0, 4, 0, -4, 0, 4]\n"), HasSubstr("negative"));
  std::string odd = base;
  odd.replace(odd.find("head_dim: 8"), 11, "head_dim: 7");
  EXPECT_THAT(error_of(odd), HasSubstr("head_dim 7 must be even for rope"));
  std::string no_expert_ffn = base;
  no_expert_ffn.erase(no_expert_ffn.find("expert_ffn: 24\n"), 15);
  EXPECT_THAT(error_of(no_expert_ffn), HasSubstr("'expert_ffn' must be positive"));
  EXPECT_THAT(error_of(base + "qkv_bias: 2\n"), HasSubstr("'qkv_bias' must be 0 or 1"));
}

}  // namespace
}  // namespace moe::test
