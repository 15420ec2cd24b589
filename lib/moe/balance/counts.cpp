#include "moe/balance/counts.hpp"

#include <cmath>

#include "core/error.hpp"

namespace moe::balance {

CountMatrix CountMatrix::rows(int64_t first, int64_t count) const {
  MOE_CHECK(first >= 0 && count >= 0 && first + count <= batches, "count matrix: batches [{}, {}) outside [0, {})",
            first, first + count, batches);
  CountMatrix out{count, experts, {}};
  out.counts.assign(counts.begin() + first * experts, counts.begin() + (first + count) * experts);
  return out;
}

void validate(const CountMatrix& m, const std::string& what) {
  MOE_CHECK(m.batches > 0, "{}: no batches", what);
  MOE_CHECK(m.experts > 0, "{}: no experts", what);
  MOE_CHECK(static_cast<int64_t>(m.counts.size()) == m.batches * m.experts, "{}: {} counts for {} batches x {} experts",
            what, m.counts.size(), m.batches, m.experts);
  for (std::size_t i = 0; i < m.counts.size(); ++i)
    MOE_CHECK(m.counts[i] >= 0, "{}: negative count {} at batch {}, expert {}", what, m.counts[i],
              static_cast<int64_t>(i) / m.experts, static_cast<int64_t>(i) % m.experts);
}

std::vector<double> mean_load(const CountMatrix& m) {
  std::vector<double> mean(static_cast<std::size_t>(m.experts), 0.0);
  for (int64_t b = 0; b < m.batches; ++b)
    for (int64_t e = 0; e < m.experts; ++e) mean[static_cast<std::size_t>(e)] += static_cast<double>(m.at(b, e));
  for (double& v : mean) v /= static_cast<double>(std::max<int64_t>(m.batches, 1));
  return mean;
}

std::vector<double> pearson_correlation(const CountMatrix& m) {
  const auto E = static_cast<std::size_t>(m.experts);
  const std::vector<double> mean = mean_load(m);
  // Centred cross products: cov[a * E + b] = sum_t (x_a - mean_a) (x_b - mean_b).
  std::vector<double> cov(E * E, 0.0), centred(E);
  for (int64_t t = 0; t < m.batches; ++t) {
    for (std::size_t e = 0; e < E; ++e) centred[e] = static_cast<double>(m.at(t, static_cast<int64_t>(e))) - mean[e];
    for (std::size_t a = 0; a < E; ++a)
      for (std::size_t b = 0; b < E; ++b) cov[a * E + b] += centred[a] * centred[b];
  }
  std::vector<double> s(E * E, 0.0);
  for (std::size_t a = 0; a < E; ++a)
    for (std::size_t b = 0; b < E; ++b) {
      const double denom = std::sqrt(cov[a * E + a] * cov[b * E + b]);
      s[a * E + b] = denom > 0 ? cov[a * E + b] / denom : 0.0;
    }
  return s;
}

std::pair<CountMatrix, CountMatrix> split_build_test(const CountMatrix& m) {
  MOE_CHECK(m.batches >= 2, "count matrix: {} batch(es); building on the first half and testing on the second needs 2",
            m.batches);
  const int64_t half = m.batches / 2;
  return {m.rows(0, half), m.rows(half, m.batches - half)};
}

}  // namespace moe::balance
