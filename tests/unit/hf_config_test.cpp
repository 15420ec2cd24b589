// config.json -> ModelConfig for each Hugging Face architecture: layer layouts, defaults of the
// configuration classes, the sliding-window cap and the refusals (tests/integration covers whole
// checkpoints).
#include "io/hf_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/error.hpp"
#include "support/process.hpp"

namespace moe {
namespace {

using testing::HasSubstr;

const std::string kCommon = R"("vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4)";

class HfConfig : public testing::Test {
 protected:
  HfArchitecture read(const std::string& arch, const std::string& keys) {
    std::ofstream(path_) << R"({"architectures": [")" << arch << R"("], )" << kCommon << ", " << keys << "}";
    return read_hf_config(path_);
  }
  std::string error_of(const std::string& arch, const std::string& keys) {
    try {
      read(arch, keys);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  test::ScratchDir dir_{"hf-config"};
  std::string path_ = dir_.file("config.json");
};

const std::string kMixtral =
    R"("intermediate_size": 16, "num_local_experts": 4, "num_experts_per_tok": 2, "num_key_value_heads": 2)";
const std::string kQwen =
    R"("intermediate_size": 24, "moe_intermediate_size": 8, "shared_expert_intermediate_size": 12,
       "num_experts": 6, "num_experts_per_tok": 2, "num_key_value_heads": 4)";
const std::string kDeepseek =
    R"("intermediate_size": 24, "moe_intermediate_size": 8, "n_routed_experts": 6, "num_experts_per_tok": 2,
       "n_shared_experts": 3)";

TEST_F(HfConfig, MixtralDefaultsAndRenormalisation) {
  const ModelConfig c = read("MixtralForCausalLM", kMixtral).config;
  EXPECT_EQ(c.family, "mixtral");
  EXPECT_TRUE(c.router_renormalize);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.layer_num_experts, (std::vector<int64_t>{4, 4, 4, 4}));
  EXPECT_FALSE(c.tie_embeddings);
}

TEST_F(HfConfig, SlidingWindowCapsMaxPositions) {
  EXPECT_EQ(read("MixtralForCausalLM", kMixtral + R"(, "max_position_embeddings": 4096, "sliding_window": 256)")
                .config.max_positions,
            256);
  EXPECT_EQ(read("MixtralForCausalLM", kMixtral + R"(, "max_position_embeddings": 4096, "sliding_window": null)")
                .config.max_positions,
            4096);
  // Qwen2-MoE's window counts only when use_sliding_window is true.
  EXPECT_EQ(read("Qwen2MoeForCausalLM", kQwen + R"(, "max_position_embeddings": 512, "sliding_window": 64)")
                .config.max_positions,
            512);
  EXPECT_EQ(read("Qwen2MoeForCausalLM",
                 kQwen + R"(, "max_position_embeddings": 512, "sliding_window": 64, "use_sliding_window": true)")
                .config.max_positions,
            64);
}

TEST_F(HfConfig, RopeParameters) {
  EXPECT_DOUBLE_EQ(
      read("MixtralForCausalLM", kMixtral + R"(, "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0})")
          .config.rope_theta,
      5000.0);
  EXPECT_THAT(error_of("MixtralForCausalLM", kMixtral + R"(, "rope_parameters": {"rope_type": "yarn", "factor": 4})"),
              HasSubstr("rope_type 'yarn'"));
}

TEST_F(HfConfig, Qwen2MoeLayers) {
  HfArchitecture a = read("Qwen2MoeForCausalLM", kQwen + R"(, "mlp_only_layers": [0], "decoder_sparse_step": 1)");
  EXPECT_EQ(a.config.layer_num_experts, (std::vector<int64_t>{0, 6, 6, 6}));
  EXPECT_TRUE(a.config.qkv_bias);
  EXPECT_FALSE(a.config.router_renormalize);
  EXPECT_EQ(a.config.shared_gate, SharedGateKind::sigmoid);
  EXPECT_EQ(a.config.shared_ffn, 12);
  EXPECT_DOUBLE_EQ(a.config.norm_eps, 1e-6);
  a = read("Qwen2MoeForCausalLM", kQwen + R"(, "decoder_sparse_step": 2, "norm_topk_prob": true)");
  EXPECT_EQ(a.config.layer_num_experts, (std::vector<int64_t>{0, 6, 0, 6}));  // (i + 1) % step == 0
  EXPECT_TRUE(a.config.router_renormalize);
}

TEST_F(HfConfig, DeepseekLayersAndSharedExperts) {
  HfArchitecture a = read("DeepseekForCausalLM", kDeepseek + R"(, "first_k_dense_replace": 1, "moe_layer_freq": 1)");
  EXPECT_EQ(a.config.layer_num_experts, (std::vector<int64_t>{0, 6, 6, 6}));
  EXPECT_EQ(a.config.shared_ffn, 24);  // 3 shared experts of 8
  EXPECT_EQ(a.config.shared_gate, SharedGateKind::none);
  EXPECT_EQ(a.config.num_kv_heads, 4);  // absent: num_attention_heads
  a = read("DeepseekForCausalLM", kDeepseek + R"(, "first_k_dense_replace": 1, "moe_layer_freq": 2)");
  EXPECT_EQ(a.config.layer_num_experts, (std::vector<int64_t>{0, 0, 6, 0}));  // i >= first and i % freq == 0
  EXPECT_TRUE(read("DeepseekForCausalLM", kDeepseek + R"(, "norm_topk_prob": true)").config.router_renormalize);
  // MoEGate renormalises only for top_k > 1.
  EXPECT_FALSE(read("DeepseekForCausalLM",
                    R"("intermediate_size": 24, "moe_intermediate_size": 8, "n_routed_experts": 6,
                       "num_experts_per_tok": 1, "norm_topk_prob": true)")
                   .config.router_renormalize);
}

TEST_F(HfConfig, OlmoeHasQkNorm) {
  const ModelConfig c =
      read("OlmoeForCausalLM", R"("intermediate_size": 8, "num_experts": 4, "num_experts_per_tok": 2)").config;
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.router_renormalize);
  EXPECT_FALSE(c.qkv_bias);
}

TEST_F(HfConfig, RefusesWhatIsNotImplemented) {
  EXPECT_THAT(error_of("MixtralForCausalLM", kMixtral + R"(, "hidden_act": "gelu")"),
              HasSubstr("'hidden_act' = 'gelu'"));
  EXPECT_THAT(error_of("MixtralForCausalLM", kMixtral + R"(, "rope_scaling": {"type": "yarn"})"),
              HasSubstr("'rope_scaling'"));
  const std::string olmoe = R"("intermediate_size": 8, "num_experts": 4, "num_experts_per_tok": 2)";
  EXPECT_THAT(error_of("OlmoeForCausalLM", olmoe + R"(, "clip_qkv": 8.0)"), HasSubstr("'clip_qkv'"));
  EXPECT_THAT(error_of("OlmoeForCausalLM", olmoe + R"(, "attention_bias": true)"), HasSubstr("'attention_bias'"));
  EXPECT_THAT(error_of("DeepseekForCausalLM", kDeepseek + R"(, "scoring_func": "sigmoid")"),
              HasSubstr("'scoring_func'"));
  EXPECT_THAT(error_of("MixtralForCausalLM", R"("intermediate_size": 16, "num_local_experts": 4)"),
              HasSubstr("missing key 'num_experts_per_tok'"));
  EXPECT_THAT(error_of("MixtralForCausalLM", kMixtral + R"(, "num_experts_per_tok": "two")"),
              HasSubstr("'num_experts_per_tok' must be an integer"));
  // Past INT64_MAX: refused as such, not wrapped to -1.
  EXPECT_THAT(error_of("MixtralForCausalLM", kMixtral + R"(, "num_experts_per_tok": 18446744073709551615)"),
              HasSubstr("'num_experts_per_tok' must be an integer, got 18446744073709551615"));
  EXPECT_THAT(error_of("GPT2LMHeadModel", R"("model_type": "gpt2")"),
              HasSubstr("architecture 'GPT2LMHeadModel' is not supported"));
}

}  // namespace
}  // namespace moe
