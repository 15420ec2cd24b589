#include "synth/routing_workload.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.hpp"

namespace moe {

namespace {

// Share of an embedding row's scale each direction carries: a row is sigma * (N(0, 1) noise in
// every coordinate + kSignal * sqrt(d) along each of its directions).
constexpr double kSignal = 0.5;

int64_t num_pairs(const ModelConfig& m) {
  int64_t most = 0;
  for (int64_t e : m.layer_num_experts) most = std::max(most, e / 2);
  return most;
}

int64_t pair_axes(const RoutingSpec& s, const ModelConfig& m) {
  return s.pair_boost != 0.0 ? num_pairs(m) : 0;
}

// A token's pair coordinate: a fixed scramble of its id, independent of its topic.
int64_t token_pair(int64_t v, int64_t pairs) {
  return static_cast<int64_t>((static_cast<uint64_t>(v) * 0x9E3779B97F4A7C15ull >> 20) % static_cast<uint64_t>(pairs));
}

// The directions each token id carries, how many, and where the coordinate axes start.
struct Axes {
  int64_t popularity = -1, topic0 = -1, pair0 = -1, count = 0;
};
Axes axes(const RoutingSpec& s, const ModelConfig& m) {
  Axes a;
  if (s.zipf != 0.0) a.popularity = a.count++;
  if (s.topics > 0 && s.topic_boost != 0.0) {
    a.topic0 = a.count;
    a.count += s.topics;
  }
  if (pair_axes(s, m) > 0) {
    a.pair0 = a.count;
    a.count += pair_axes(s, m);
  }
  return a;
}

// The value a direction's coordinate has after the first layer's norm, for a token carrying
// `directions` directions (the norm divides by the row's RMS; the axes hold no noise).
double normed_coordinate(const ModelConfig& m, int64_t directions, int64_t axes_count) {
  const double d = static_cast<double>(m.hidden_size);
  const double noise = (d - static_cast<double>(axes_count)) / d;
  return kSignal * std::sqrt(d) / std::sqrt(noise + static_cast<double>(directions) * kSignal * kSignal);
}

}  // namespace

int64_t token_topic(int64_t v, int64_t vocab_size, int64_t topics) {
  return v * topics / vocab_size;
}

void validate_routing_spec(const RoutingSpec& s, const ModelConfig& m) {
  MOE_CHECK(std::isfinite(s.zipf) && s.zipf >= 0, "routing: --zipf must be >= 0, got {}", s.zipf);
  MOE_CHECK(s.topics >= 0 && s.topics <= m.vocab_size, "routing: --topics must be in [0, {}] (the vocabulary), got {}",
            m.vocab_size, s.topics);
  MOE_CHECK(std::isfinite(s.topic_boost) && std::isfinite(s.pair_boost), "routing: boosts must be finite");
  if (s.topics > 0 && s.topic_boost != 0.0)
    for (int64_t i = 0; i < m.num_layers; ++i)
      MOE_CHECK(!m.is_moe_layer(i) || (s.topic_experts >= 1 && s.topic_experts <= m.num_experts(i)),
                "routing: --topic-experts must be in [1, {}] (the experts of MoE layer {}), got {}", m.num_experts(i),
                i, s.topic_experts);
  MOE_CHECK(s.pair_boost == 0.0 || num_pairs(m) > 0, "routing: --pair-boost needs layers of at least 2 experts");
  const Axes a = axes(s, m);
  MOE_CHECK(a.count <= m.hidden_size,
            "routing: {} directions (popularity, topics, pairs) need hidden_size >= {}, got {}", a.count, a.count,
            m.hidden_size);
}

void zero_axis_rows(const RoutingSpec& s, const ModelConfig& m, float* w, int64_t blocks, int64_t cols) {
  const int64_t n = axes(s, m).count;
  for (int64_t b = 0; b < blocks; ++b)
    std::fill_n(w + b * m.hidden_size * cols, n * cols, 0.0f);  // the axes are coordinates 0..n-1
}

void zero_axis_columns(const RoutingSpec& s, const ModelConfig& m, float* w, int64_t rows) {
  const int64_t n = axes(s, m).count;
  for (int64_t r = 0; r < rows; ++r) std::fill_n(w + r * m.hidden_size, n, 0.0f);
}

void add_routing_directions(const RoutingSpec& s, const ModelConfig& m, double sigma, float* embed) {
  const Axes a = axes(s, m);
  const int64_t d = m.hidden_size;
  const float spike = static_cast<float>(sigma * kSignal * std::sqrt(static_cast<double>(d)));
  zero_axis_columns(s, m, embed, m.vocab_size);
  for (int64_t v = 0; v < m.vocab_size; ++v) {
    float* row = embed + v * d;
    if (a.popularity >= 0) row[a.popularity] += spike;
    if (a.topic0 >= 0) row[a.topic0 + token_topic(v, m.vocab_size, s.topics)] += spike;
    if (a.pair0 >= 0) row[a.pair0 + token_pair(v, pair_axes(s, m))] += spike;
  }
}

void shape_router(const RoutingSpec& s, const ModelConfig& m, int64_t layer, uint64_t seed, float* router) {
  const Axes a = axes(s, m);
  if (a.count == 0) return;
  const int64_t e = m.num_experts(layer);
  const int64_t d = m.hidden_size;
  const int64_t directions = (a.popularity >= 0) + (a.topic0 >= 0) + (a.pair0 >= 0);
  const double unit = normed_coordinate(m, directions, a.count);  // logit per unit of router weight
  std::mt19937_64 rng(seed * 0x100000001B3ull + static_cast<uint64_t>(layer));
  auto permutation = [&] {
    std::vector<int64_t> p(static_cast<std::size_t>(e));
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    return p;
  };
  const std::vector<int64_t> popularity = permutation();  // popularity[r]: the expert of rank r
  const std::vector<int64_t> topic_order = permutation();
  const std::vector<int64_t> pair_order = permutation();
  auto set = [&](int64_t expert, int64_t axis, double nats) {
    router[expert * d + axis] = static_cast<float>(nats / unit);
  };
  for (int64_t r = 0; r < e; ++r) {
    const int64_t x = popularity[static_cast<std::size_t>(r)];
    if (a.popularity >= 0) set(x, a.popularity, -s.zipf * std::log(static_cast<double>(r + 1)));
  }
  if (a.topic0 >= 0) {
    for (int64_t t = 0; t < s.topics; ++t) {
      for (int64_t x = 0; x < e; ++x) set(x, a.topic0 + t, 0.0);
      // Topic t prefers a window of topic_experts experts of a random order; consecutive topics'
      // windows are disjoint until the experts run out, then wrap.
      for (int64_t j = 0; j < s.topic_experts; ++j)
        set(topic_order[static_cast<std::size_t>((t * s.topic_experts + j) % e)], a.topic0 + t, s.topic_boost);
    }
  }
  if (a.pair0 >= 0) {
    // Pair coordinate q boosts pair q mod (E / 2) of this layer: experts pair_order[2p], [2p+1].
    const int64_t pairs = e / 2;
    for (int64_t q = 0; q < pair_axes(s, m); ++q) {
      for (int64_t x = 0; x < e; ++x) set(x, a.pair0 + q, 0.0);
      if (pairs == 0) continue;
      const int64_t p = q % pairs;
      set(pair_order[static_cast<std::size_t>(2 * p)], a.pair0 + q, s.pair_boost);
      set(pair_order[static_cast<std::size_t>(2 * p + 1)], a.pair0 + q, s.pair_boost);
    }
  }
}

}  // namespace moe
