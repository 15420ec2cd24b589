#pragma once
// Synthetic models and token datasets whose real routing (through the model's own router) has
// controlled statistics, for studying expert caching and placement (docs/workloads.md):
//  - skewed expert popularity: a common direction in every token embedding, and router rows whose
//    component along it gives expert of popularity rank r a logit bias of -zipf * ln(r + 1), so
//    that routing probabilities lean towards Zipf(zipf) over the experts;
//  - topic locality: the vocabulary is split into `topics` contiguous id ranges; a topic's tokens
//    carry its own direction, and the router rows of the topic's `topic_experts` preferred experts
//    add `topic_boost` nats along it; token datasets put runs of consecutive sequences on one
//    topic, so consecutive batches reuse experts;
//  - correlated experts: experts come in pairs; every token id carries one pair's direction, which
//    adds `pair_boost` nats to both experts of the pair, so they fire together (with top_k >= 2).
// The directions are coordinate axes of the hidden space (axis 0 popularity, then one per topic,
// then one per pair), so they are orthogonal; each carries kSignal of an embedding row's scale.
// The axes are a clean channel: embeddings carry no noise on them, and no layer writes into them
// (the rows of o_proj and of every MLP's and expert's down projection for those axes are zero),
// so a token's directions reach every MoE layer's router unchanged, only scaled by the norm as
// the residual stream grows with depth.
#include <cstdint>
#include <vector>

#include "config/model_config.hpp"

namespace moe {

struct RoutingSpec {
  double zipf = 0.0;          // popularity skew exponent (0: none)
  int64_t topics = 0;         // vocabulary topics (0: none)
  int64_t topic_experts = 0;  // experts each topic prefers (per MoE layer; at most its experts)
  double topic_boost = 0.0;   // nats added to the preferred experts' logits of a topic's tokens
  double pair_boost = 0.0;    // nats added to both experts of a token's pair (0: no pairs)
  bool active() const { return zipf != 0.0 || (topics > 0 && topic_boost != 0.0) || pair_boost != 0.0; }
};

// Checks the spec against the model (one line naming the value): enough hidden dimensions for
// the directions, topic_experts within every MoE layer's experts, topics within the vocabulary.
void validate_routing_spec(const RoutingSpec& spec, const ModelConfig& model);

// Puts the directions into the token embedding [V, d] whose entries have standard deviation sigma
// (and clears the other rows' noise on the axes).
void add_routing_directions(const RoutingSpec& spec, const ModelConfig& model, double sigma, float* embed);

// Zeroes the rows of the axes in `blocks` matrices [d, cols] stored one after another (an output
// projection into the residual stream), and in a position embedding use blocks = 1 with the
// transposed view: zero_axis_columns.
void zero_axis_rows(const RoutingSpec& spec, const ModelConfig& model, float* m, int64_t blocks, int64_t cols);
// Zeroes the columns of the axes in a matrix [rows, d] (a position embedding).
void zero_axis_columns(const RoutingSpec& spec, const ModelConfig& model, float* m, int64_t rows);

// Sets the router [E, d] of MoE layer `layer` along the directions (other entries stay random).
// The popularity order, topic experts and pairs are drawn from `seed` and the layer.
void shape_router(const RoutingSpec& spec, const ModelConfig& model, int64_t layer, uint64_t seed, float* router);

// The topic of token id v (ids [ceil(t V / T), ceil((t + 1) V / T)) are topic t).
int64_t token_topic(int64_t v, int64_t vocab_size, int64_t topics);

}  // namespace moe
