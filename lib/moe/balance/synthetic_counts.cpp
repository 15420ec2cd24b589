#include "moe/balance/synthetic_counts.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.hpp"

namespace moe::balance {

CountMatrix synthetic_counts(const SyntheticCountsOptions& o) {
  MOE_CHECK(o.experts > 0 && o.batches > 0 && o.rows_per_batch >= 0,
            "synthetic counts: {} experts, {} batches, {} rows per batch", o.experts, o.batches, o.rows_per_batch);
  MOE_CHECK(o.zipf >= 0 && o.pair_spread >= 0, "synthetic counts: zipf {} and pair spread {} must be >= 0", o.zipf,
            o.pair_spread);
  MOE_CHECK(o.correlated_pairs >= 0 && 2 * o.correlated_pairs <= o.experts,
            "synthetic counts: {} correlated pairs need {} experts, there are {}", o.correlated_pairs,
            2 * o.correlated_pairs, o.experts);
  const auto E = static_cast<std::size_t>(o.experts);
  std::mt19937_64 rng(o.seed);
  // popular[i]: the expert of popularity rank i (a random order, so the hot experts are not simply
  // the first ids, which the contiguous placement would put on one rank).
  std::vector<int64_t> popular(E);
  std::iota(popular.begin(), popular.end(), 0);
  std::shuffle(popular.begin(), popular.end(), rng);
  std::vector<double> weight(E);
  for (std::size_t i = 0; i < E; ++i)
    weight[static_cast<std::size_t>(popular[i])] = 1.0 / std::pow(static_cast<double>(i + 1), o.zipf);

  CountMatrix m{o.batches, o.experts, std::vector<int64_t>(E * static_cast<std::size_t>(o.batches), 0)};
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> w(E);
  for (int64_t b = 0; b < o.batches; ++b) {
    w = weight;
    // Mean-one log-normal factor shared by the two experts of each pair.
    for (int64_t p = 0; p < o.correlated_pairs; ++p) {
      const double f = std::exp(o.pair_spread * normal(rng) - 0.5 * o.pair_spread * o.pair_spread);
      w[static_cast<std::size_t>(popular[static_cast<std::size_t>(2 * p)])] *= f;
      w[static_cast<std::size_t>(popular[static_cast<std::size_t>(2 * p + 1)])] *= f;
    }
    // Multinomial draw as a chain of binomials: expert e gets Binomial(rows left, w_e / weight left).
    double mass = std::accumulate(w.begin(), w.end(), 0.0);
    int64_t left = o.rows_per_batch;
    for (std::size_t e = 0; e < E && left > 0; ++e) {
      const double p = e + 1 == E ? 1.0 : std::clamp(w[e] / mass, 0.0, 1.0);
      const int64_t x = std::binomial_distribution<int64_t>(left, p)(rng);
      m.counts[static_cast<std::size_t>(b) * E + e] = x;
      left -= x;
      mass -= w[e];
    }
  }
  return m;
}

}  // namespace moe::balance
