// moe-bench: micro-benchmarks that give the machine's floor for moe-score's figures:
// `gemm` (the backend's linear, the shape of the expert and LM-head GEMMs), `stream`
// (memory bandwidth, which bounds weight-streaming phases) and `alltoall` (the expert-parallel
// exchange, flat against hierarchical; bench_alltoall.cpp) and `gating` (static against dynamic
// gating; bench_gating.cpp), `place` (expert placement planners on synthetic routing;
// bench_place.cpp) and `cache` (expert-cache policies replayed on a routing trace;
// bench_cache.cpp). Tables print max-over-ranks times
// and a grep-able PERFORMANCE line, with the command line that produced them.
#include <cblas.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/gemm.hpp"
#include "bench_alltoall.hpp"
#include "bench_cache.hpp"
#include "bench_gating.hpp"
#include "bench_model.hpp"
#include "bench_place.hpp"
#include "core/timer.hpp"
#include "main_support.hpp"
#include "runtime/memory.hpp"

extern "C" int openblas_get_num_threads(void);

namespace {

// The CPU's flags that the kernel choice read and the kernels it made, one per line.
void print_cpu_kernels(const char* prefix) {
  const moe::cpu::GemmKernels& k = moe::cpu::gemm_kernels();
  fmt::print("{}cpu flags: {}\n{}f32 GEMM: {}\n{}bf16 GEMM: {}\n{}OpenBLAS (attention; baseline): {}\n", prefix,
             moe::cpu::cpu_features().flags, prefix, k.f32, prefix, k.bf16, prefix, k.openblas);
}

// Median of `reps` timed runs of fn (after one warm-up).
template <typename Fn>
double median_seconds(int reps, Fn&& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double start = moe::now_seconds();
    fn();
    t.push_back(moe::now_seconds() - start);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double max_over_ranks(double v) {
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return v;
}

moe::GemmRates bench_gemm(const std::string& backend_name, int reps, const std::string& command) {
  auto backend = moe::make_backend(backend_name);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    fmt::print("# {}\n# backend {}, {} BLAS threads\n", command, backend->name(), openblas_get_num_threads());
    if (backend->name() == "cpu") print_cpu_kernels("# ");
    fmt::print("# y[M, N] = x[M, K] . W[N, K]^T, median of {} runs, time max over ranks\n", reps);
    if (backend->name() == "cpu")
      fmt::print("# kernel: the backend's choice; 'openblas': OpenBLAS sgemm as this process has it (baseline)\n");
    fmt::print("{:>6} {:>6} {:>6} {:>5} {:>8} | {:>10} {:>9} {:>11}\n", "M", "N", "K", "dtype", "kernel", "time(us)",
               "GFLOP/s", "x openblas");
  }
  struct Shape {
    int64_t m, n, k;
  };
  // Expert GEMMs (rows routed to one expert x 2*ffn or d), attention projections, LM-head tile.
  const Shape shapes[] = {{128, 5632, 1024},  {1024, 5632, 1024}, {1024, 1024, 2816},
                          {4096, 1536, 1024}, {256, 4096, 1024},  {4096, 2816, 1024}};
  struct Variant {
    moe::DType dtype;
    bool openblas;  // OpenBLAS's sgemm on the CPU backend's (host) buffers
  };
  std::vector<Variant> variants = {{moe::DType::f32, false}, {moe::DType::bf16, false}};
  if (backend->name() == "cpu") variants.insert(variants.begin(), Variant{moe::DType::f32, true});
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  double best = 0, best_bf16 = 0;
  for (const Shape& s : shapes) {
    double openblas_gflops = 0;
    for (const Variant& variant : variants) {
      const moe::DType dtype = variant.dtype;
      std::vector<float> x(static_cast<std::size_t>(s.m * s.k));
      for (auto& v : x) v = dist(rng);
      std::vector<std::byte> w(static_cast<std::size_t>(s.n * s.k) * moe::dtype_size(dtype));
      for (int64_t i = 0; i < s.n * s.k; ++i) {
        const float v = dist(rng);
        if (dtype == moe::DType::f32)
          std::memcpy(w.data() + 4 * i, &v, 4);
        else {
          const uint16_t b = moe::float_to_bf16(v);
          std::memcpy(w.data() + 2 * i, &b, 2);
        }
      }
      moe::DeviceBuffer dx = backend->alloc(x.size() * 4), dw = backend->alloc(w.size()),
                        dy = backend->alloc(static_cast<std::size_t>(s.m * s.n) * 4);
      backend->copy_to_device(dx.data(), x.data(), x.size() * 4);
      backend->copy_to_device(dw.data(), w.data(), w.size());
      const moe::WeightView view{dw.data(), dtype, s.n, s.k, s.k};
      const double t = max_over_ranks(median_seconds(reps, [&] {
        if (variant.openblas)
          moe::cpu::gemm_f32_openblas(dx.as<float>(), s.m, view, dy.as<float>(), 0.0f);
        else
          backend->linear(dx.as<float>(), s.m, view, dy.as<float>(), 0.0f);
        backend->synchronize();
      }));
      const double gflops = 2.0 * static_cast<double>(s.m * s.n * s.k) / t / 1e9;
      if (variant.openblas) openblas_gflops = gflops;
      // The best f32 rate this machine gave in this run, whichever kernel gave it.
      (dtype == moe::DType::f32 ? best : best_bf16) = std::max(dtype == moe::DType::f32 ? best : best_bf16, gflops);
      if (rank == 0)
        fmt::print("{:>6} {:>6} {:>6} {:>5} {:>8} | {:>10.1f} {:>9.1f} {:>11}\n", s.m, s.n, s.k, moe::dtype_name(dtype),
                   variant.openblas ? "openblas" : "chosen", t * 1e6, gflops,
                   openblas_gflops > 0 ? fmt::format("{:.2f}", gflops / openblas_gflops) : std::string("-"));
    }
  }
  if (rank == 0) fmt::print("PERFORMANCE gemm best_f32_gflops={:.1f} best_bf16_gflops={:.1f}\n", best, best_bf16);
  return {best, best_bf16};
}

void bench_stream(int reps, const std::string& command) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (rank == 0) {
    fmt::print("# {}\n# copy a[i] = b[i] (read + write bytes counted), median of {} runs, every rank at once\n",
               command, reps);
    fmt::print("{:>12} | {:>10} {:>12} {:>12}\n", "bytes", "time(us)", "GB/s/rank", "GB/s total");
  }
  double best = 0;
  for (std::size_t bytes : {std::size_t{1} << 20, std::size_t{16} << 20, std::size_t{256} << 20}) {
    std::vector<float> a(bytes / 4, 1.0f), b(bytes / 4, 2.0f);
    MOE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double t = max_over_ranks(median_seconds(reps, [&] {
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < a.size(); ++i) a[i] = b[i];
    }));
    const double gbs = 2.0 * static_cast<double>(bytes) / t / 1e9;
    best = std::max(best, gbs * ranks);
    if (rank == 0) fmt::print("{:>12} | {:>10.1f} {:>12.2f} {:>12.2f}\n", bytes, t * 1e6, gbs, gbs * ranks);
  }
  if (rank == 0) fmt::print("PERFORMANCE stream best_total_gbs={:.2f}\n", best);
}

}  // namespace

int main(int argc, char** argv) {
  moe::cpu::choose_blas_kernels(argv);  // first: it may restart the program with other GEMM kernels
  moe::reuse_freed_memory();
  CLI::App app{"moe-bench: micro-benchmarks (GEMM rate, memory bandwidth, all-to-all) that set moe-score's floor.",
               "moe-bench"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("moe-bench ") + MOE_VERSION);
  std::string backend = "cpu";
  int reps = 5;
  auto* gemm = app.add_subcommand("gemm", "GFLOP/s of the backend's linear at moe-score's GEMM shapes");
  gemm->add_option("--backend", backend, "cpu or cuda")->capture_default_str();
  gemm->add_option("--reps", reps, "timed runs per shape")->capture_default_str();
  auto* stream = app.add_subcommand("stream", "memory bandwidth of a large copy");
  stream->add_option("--reps", reps, "timed runs per size")->capture_default_str();
  moe::AlltoallBenchOptions a2a;
  auto* alltoall = app.add_subcommand("alltoall", "flat and hierarchical all-to-all: nccl-tests table");
  alltoall->add_option("--ranks-per-node", a2a.ranks_per_node, "simulated ranks per node (0: from shared memory)")
      ->capture_default_str();
  alltoall->add_option("--min-bytes", a2a.min_bytes, "smallest size (bytes each rank sends)")->capture_default_str();
  alltoall->add_option("--max-bytes", a2a.max_bytes, "largest size (doubling from --min-bytes)")->capture_default_str();
  alltoall->add_option("--reps", a2a.reps, "timed runs per size and variant")->capture_default_str();
  moe::GatingBenchOptions gating;
  auto* gating_cmd =
      app.add_subcommand("gating", "static (capacity, padding, drops) vs dynamic gating on uniform and skewed routing");
  gating_cmd->add_option("--tokens", gating.tokens, "tokens per rank")->capture_default_str();
  gating_cmd->add_option("--hidden", gating.hidden, "hidden size d")->capture_default_str();
  gating_cmd->add_option("--ffn", gating.ffn, "expert FFN width")->capture_default_str();
  gating_cmd->add_option("--experts", gating.experts, "experts in the layer")->capture_default_str();
  gating_cmd->add_option("--top-k", gating.top_k, "experts per token")->capture_default_str();
  gating_cmd->add_option("--skew", gating.skew, "Zipf exponent of the skewed routing")->capture_default_str();
  gating_cmd->add_option("--capacity-factors", gating.capacity_factors, "static gating's capacity factors")
      ->capture_default_str();
  gating_cmd->add_option("--alltoall", gating.alltoall, "flat or hierarchical")->capture_default_str();
  gating_cmd->add_option("--ranks-per-node", gating.ranks_per_node, "simulated ranks per node (0: from shared memory)")
      ->capture_default_str();
  gating_cmd->add_option("--reps", gating.reps, "timed runs per configuration")->capture_default_str();
  moe::PlaceBenchOptions place;
  auto* place_cmd = app.add_subcommand(
      "place", "placement planners on synthetic Zipf routing: Max Load on held-out batches (the moe-place table)");
  place_cmd->add_option("--experts", place.counts.experts, "experts in the layer")->capture_default_str();
  place_cmd->add_option("--world", place.plan.world, "ranks")->capture_default_str();
  place_cmd->add_option("--ranks-per-node", place.plan.ranks_per_node, "replicate: ranks per node (0: one node)")
      ->capture_default_str();
  place_cmd->add_option("--replicas", place.plan.replicas, "replicate: extra expert slots per rank")
      ->capture_default_str();
  place_cmd->add_option("--zipf", place.counts.zipf, "Zipf exponent of expert popularity")->capture_default_str();
  place_cmd->add_option("--pairs", place.counts.correlated_pairs, "correlated pairs among the most popular experts")
      ->capture_default_str();
  place_cmd->add_option("--pair-spread", place.counts.pair_spread, "sigma of a pair's shared log-normal factor")
      ->capture_default_str();
  place_cmd->add_option("--batches", place.counts.batches, "batches (first half builds, second half tests)")
      ->capture_default_str();
  place_cmd->add_option("--rows", place.counts.rows_per_batch, "routed rows per batch (tokens x top-k)")
      ->capture_default_str();
  place_cmd->add_option("--seed", place.counts.seed, "random seed")->capture_default_str();
  place_cmd->add_option("--loads", place.loads_json, "write per-rank rows of every policy here (JSON)");
  place_cmd->add_flag("--force", place.force, "--loads may replace any file (else only an earlier loads file)");
  moe::CacheBenchOptions cache;
  auto* cache_cmd = app.add_subcommand(
      "cache", "replay a routing trace through each expert-cache policy and size: miss rates and gap to Belady");
  cache_cmd->add_option("--trace", cache.trace, "results file of moe-score with moe.trace: true")->required();
  cache_cmd->add_option("--slots", cache.slots, "cache sizes per layer and rank: N experts or P% of them")
      ->delimiter(',')
      ->capture_default_str();
  cache_cmd->add_option("--policies", cache.policies, "eviction policies (lifo, lru, belady)")
      ->delimiter(',')
      ->capture_default_str();
  cache_cmd->add_option("--ranks", cache.ranks, "expert-parallel ranks modelled (contiguous expert ranges)")
      ->capture_default_str();
  cache_cmd->add_option("--csv", cache.csv, "also write the table as CSV (scripts/plot_cache.py plots it)");
  cache_cmd->add_flag("--force", cache.force, "--csv may replace any file (else only an earlier CSV table)");
  std::string run_file;
  std::vector<std::string> overrides;
  auto* model = app.add_subcommand(
      "model",
      "moe-bench gemm, then one moe-score run: FLOPs per token and each phase's GFLOP/s against the best GEMM");
  model->add_option("RUN.yaml", run_file, "run file, as for moe-score (its output is written)")->required();
  model->add_option("--set", overrides, "override a run-file key")->type_name("KEY=VALUE");
  model->add_option("--reps", reps, "timed runs per GEMM shape")->capture_default_str();
  std::string command = "moe-bench";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return moe::run_main("moe-bench", argc, argv, [&] {
    if (*gemm) bench_gemm(backend, reps, command);
    if (*model) moe::bench_model(run_file, overrides, bench_gemm(backend, reps, command), command);
    if (*stream) bench_stream(reps, command);
    if (*alltoall) moe::bench_alltoall(a2a, command);
    if (*gating_cmd) moe::bench_gating(gating, command);
    if (*place_cmd) moe::bench_place(place, command);
    if (*cache_cmd) moe::bench_cache(cache, command);
    return 0;
  });
}
