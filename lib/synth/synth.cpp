#include "synth/synth.hpp"

#include <mpi.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/h5.hpp"

namespace moe {

namespace {

class Filler {
 public:
  explicit Filler(uint64_t seed) : rng_(seed) {}
  std::vector<float> normal(int64_t n, double mean, double stddev) {
    std::normal_distribution<double> dist(mean, stddev);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<float>(dist(rng_));
    return v;
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace

void write_random_model(const ModelConfig& c, const std::string& path, uint64_t seed, DType dtype, double router_scale,
                        const RoutingSpec& routing) {
  validate_routing_spec(routing, c);
  CheckpointWriter out(path, c, MPI_COMM_SELF);
  Filler fill(seed);
  const int64_t d = c.hidden_size;
  // shape_values (optional) edits the drawn values before they are written (routing workloads).
  auto matrix = [&](const std::string& name, std::vector<int64_t> shape, double scale = 1.0,
                    const std::function<void(float*, double sigma)>& shape_values = {}) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    const double sigma = scale / std::sqrt(static_cast<double>(shape.back()));
    auto values = fill.normal(n, 0.0, sigma);
    if (shape_values) shape_values(values.data(), sigma);
    out.write(name, shape, values.data(), dtype);
  };
  auto vector = [&](const std::string& name, int64_t n, double mean) {
    const auto values = fill.normal(n, mean, 0.1);
    out.write(name, {n}, values.data(), dtype);
  };
  auto norm = [&](const std::string& prefix) {
    vector(prefix + "/weight", d, 1.0);
    if (c.norm == NormKind::layernorm) vector(prefix + "/bias", d, 0.0);
  };
  // Outputs into the residual stream leave a routing workload's axes alone (routing_workload.hpp).
  auto no_axis_writes = [&](int64_t blocks, int64_t cols) {
    return [&, blocks, cols](float* v, double) {
      if (routing.active()) zero_axis_rows(routing, c, v, blocks, cols);
    };
  };
  auto mlp = [&](const std::string& prefix, int64_t ffn) {
    if (c.activation == ActivationKind::swiglu) matrix(prefix + "/gate_proj", {ffn, d});
    matrix(prefix + "/up_proj", {ffn, d});
    matrix(prefix + "/down_proj", {d, ffn}, 1.0, no_axis_writes(1, ffn));
  };
  // Embeddings are N(0, 1) per entry: rows of unit-scale vectors, as the norms expect. A tied
  // table is also the LM head, whose logits would then be O(sqrt(d)) (log-probabilities near
  // -50, where one fp32 ulp is 4e-6): it is drawn N(0, 1/d) so logits are O(1), as in real models.
  const double embed_scale = c.tie_embeddings ? 1.0 : std::sqrt(static_cast<double>(d));
  matrix("embed_tokens", {c.vocab_size, d}, embed_scale,
         [&](float* v, double sigma) { add_routing_directions(routing, c, sigma, v); });
  if (c.position == PositionKind::learned)
    matrix("embed_positions", {c.max_positions, d}, 0.5 * embed_scale, [&](float* v, double) {
      if (routing.active()) zero_axis_columns(routing, c, v, c.max_positions);
    });
  const int64_t q_rows = c.num_heads * c.head_dim;
  const int64_t kv_rows = c.num_kv_heads * c.head_dim;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "layers/" + std::to_string(i);
    norm(p + "/attn_norm");
    matrix(p + "/attn/q_proj", {q_rows, d});
    matrix(p + "/attn/k_proj", {kv_rows, d});
    matrix(p + "/attn/v_proj", {kv_rows, d});
    if (c.qkv_bias) {
      vector(p + "/attn/q_bias", q_rows, 0.0);
      vector(p + "/attn/k_bias", kv_rows, 0.0);
      vector(p + "/attn/v_bias", kv_rows, 0.0);
    }
    if (c.qk_norm) {
      vector(p + "/attn/q_norm", q_rows, 1.0);
      vector(p + "/attn/k_norm", kv_rows, 1.0);
    }
    matrix(p + "/attn/o_proj", {d, q_rows}, 1.0, no_axis_writes(1, q_rows));
    norm(p + "/mlp_norm");
    if (!c.is_moe_layer(i)) {
      mlp(p + "/mlp", c.dense_ffn);
      continue;
    }
    const int64_t e = c.num_experts(i);
    matrix(p + "/moe/router", {e, d}, router_scale, [&](float* v, double) { shape_router(routing, c, i, seed, v); });
    if (c.activation == ActivationKind::swiglu) matrix(p + "/moe/experts/gate_proj", {e, c.expert_ffn, d});
    matrix(p + "/moe/experts/up_proj", {e, c.expert_ffn, d});
    matrix(p + "/moe/experts/down_proj", {e, d, c.expert_ffn}, 1.0, no_axis_writes(e, c.expert_ffn));
    if (c.shared_ffn > 0) mlp(p + "/moe/shared", c.shared_ffn);
    if (c.shared_gate == SharedGateKind::sigmoid) matrix(p + "/moe/shared_gate", {1, d});
  }
  norm("final_norm");
  if (!c.tie_embeddings) matrix("lm_head", {c.vocab_size, d});
  out.close();
}

void write_random_tokens(const TokenSpec& spec, const std::string& path) {
  MOE_CHECK(spec.vocab_size > 0, "tokens: vocab size must be positive, got {}", spec.vocab_size);
  MOE_CHECK(spec.num_seqs > 0, "tokens: number of sequences must be positive, got {}", spec.num_seqs);
  MOE_CHECK(spec.min_length >= 0 && spec.min_length <= spec.max_length && spec.max_length > 0,
            "tokens: need 0 <= min length ({}) <= max length ({}), max > 0", spec.min_length, spec.max_length);
  std::mt19937_64 rng(spec.seed);
  std::uniform_int_distribution<int64_t> length_dist(spec.min_length, spec.max_length);
  MOE_CHECK(spec.topics >= 0 && spec.topics <= spec.vocab_size, "tokens: --topics must be in [0, {}], got {}",
            spec.vocab_size, spec.topics);
  MOE_CHECK(spec.topic_run >= 1, "tokens: --topic-run must be >= 1, got {}", spec.topic_run);
  MOE_CHECK(spec.topic_purity >= 0 && spec.topic_purity <= 1, "tokens: --topic-purity must be in [0, 1], got {}",
            spec.topic_purity);
  std::uniform_int_distribution<int32_t> id_dist(0, static_cast<int32_t>(spec.vocab_size - 1));
  std::vector<int64_t> lengths(static_cast<std::size_t>(spec.num_seqs));
  for (auto& l : lengths) l = length_dist(rng);
  // Topic workloads: runs of topic_run consecutive sequences share a topic (drawn per run); a
  // token is from the topic's id range with probability topic_purity, else from the vocabulary.
  std::vector<int64_t> seq_topic(lengths.size(), -1);
  if (spec.topics > 0) {
    std::uniform_int_distribution<int64_t> topic_dist(0, spec.topics - 1);
    for (std::size_t s = 0; s < seq_topic.size(); ++s)
      seq_topic[s] = s % static_cast<std::size_t>(spec.topic_run) == 0 ? topic_dist(rng) : seq_topic[s - 1];
  }
  std::bernoulli_distribution pure(spec.topic_purity);
  auto draw = [&](std::size_t s) -> int32_t {
    const int64_t t = seq_topic[s];
    if (t < 0 || !pure(rng)) return id_dist(rng);
    const int64_t v = spec.vocab_size, n = spec.topics;
    const int64_t lo = (t * v + n - 1) / n, hi = ((t + 1) * v + n - 1) / n;  // token_topic's ranges
    return static_cast<int32_t>(std::uniform_int_distribution<int64_t>(lo, hi - 1)(rng));
  };
  h5::File file = h5::File::create(path, MPI_COMM_SELF);
  if (spec.ragged) {
    std::vector<int64_t> offsets(lengths.size() + 1, 0);
    for (std::size_t i = 0; i < lengths.size(); ++i) offsets[i + 1] = offsets[i] + lengths[i];
    std::vector<int32_t> ids(static_cast<std::size_t>(offsets.back()));
    for (std::size_t s = 0; s < lengths.size(); ++s)
      for (int64_t t = offsets[s]; t < offsets[s + 1]; ++t) ids[static_cast<std::size_t>(t)] = draw(s);
    file.create_dataset<int32_t>("tokens", {offsets.back()});
    file.write<int32_t>("tokens", {0}, {offsets.back()}, ids.data());
    file.create_dataset<int64_t>("offsets", {spec.num_seqs + 1});
    file.write<int64_t>("offsets", {0}, {spec.num_seqs + 1}, offsets.data());
    file.close();
    return;
  }
  std::vector<int32_t> ids(static_cast<std::size_t>(spec.num_seqs * spec.max_length), -1);
  std::vector<int32_t> lengths32(lengths.begin(), lengths.end());
  for (int64_t s = 0; s < spec.num_seqs; ++s)
    for (int64_t t = 0; t < lengths[s]; ++t) ids[s * spec.max_length + t] = draw(static_cast<std::size_t>(s));
  file.create_dataset<int32_t>("tokens", {spec.num_seqs, spec.max_length});
  file.write<int32_t>("tokens", {0, 0}, {spec.num_seqs, spec.max_length}, ids.data());
  file.create_dataset<int32_t>("lengths", {spec.num_seqs});
  file.write<int32_t>("lengths", {0}, {spec.num_seqs}, lengths32.data());
  file.close();
}

}  // namespace moe
