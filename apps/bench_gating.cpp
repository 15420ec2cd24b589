// moe-bench gating. Routing is drawn, not computed (the router GEMM is the same for both
// policies): each token picks top_k distinct experts, uniformly or with probability ~ 1/(e+1)^s,
// with random gate weights. Per configuration: time = max over ranks of the median iteration;
// rows = expert rows computed per rank (max over ranks: the straggler sets the pace); dropped =
// routed choices that did not fit; padded = share of computed rows that were padding; tokens/s =
// all ranks' tokens / time; "vs dynamic" = this time / dynamic gating's time on the same routing.
#include "bench_gating.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <memory>
#include <random>

#include "backend/backend.hpp"
#include "backend/workspace.hpp"
#include "comm/alltoall.hpp"
#include "comm/topology.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"
#include "moe/alltoall_dispatcher.hpp"
#include "moe/dispatch_plan.hpp"
#include "moe/placement.hpp"

namespace moe {

namespace {

struct Routing {
  std::vector<int32_t> ids;    // [T, k]
  std::vector<float> weights;  // [T, k]
};

Routing draw_routing(int64_t tokens, int64_t experts, int64_t k, double skew, std::mt19937_64& rng) {
  std::vector<double> p(static_cast<std::size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) p[e] = skew > 0 ? 1.0 / std::pow(static_cast<double>(e + 1), skew) : 1.0;
  Routing r;
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> left = p;
    float total = 0;
    const std::size_t start = r.weights.size();
    for (int64_t j = 0; j < k; ++j) {
      std::discrete_distribution<int> pick(left.begin(), left.end());
      const int e = pick(rng);
      left[static_cast<std::size_t>(e)] = 0.0;  // k distinct experts
      r.ids.push_back(e);
      r.weights.push_back(u(rng));
      total += r.weights.back();
    }
    for (std::size_t i = start; i < r.weights.size(); ++i) r.weights[i] /= total;
  }
  return r;
}

double max_over_ranks(double v) {
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return v;
}

double sum_over_ranks(double v) {
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  return v;
}

}  // namespace

void bench_gating(const GatingBenchOptions& o, const std::string& command) {
  Topology topology(MPI_COMM_WORLD, o.ranks_per_node, 1);
  const int rank = topology.world_rank, world = topology.world_size;
  auto backend = make_backend("cpu");
  auto world_comm = make_mpi_communicator(topology.world_comm);
  auto alltoall = make_alltoall(o.alltoall, topology, *backend);
  ModelConfig model;
  model.num_layers = 1;
  model.hidden_size = o.hidden;
  model.expert_ffn = o.ffn;
  model.top_k = o.top_k;
  model.activation = ActivationKind::swiglu;
  model.layer_num_experts = {o.experts};
  const ExpertPlacement placement(model, world);
  const std::vector<LocalExpert>& mine = placement.local_experts(0, rank);
  const auto local = static_cast<int64_t>(mine.size());
  const int64_t ffn = mine.empty() ? o.ffn : mine[0].ffn();  // the contiguous default: one width per rank
  const int64_t d = o.hidden, t = o.tokens, k = o.top_k;

  std::mt19937_64 rng(1234 + static_cast<uint64_t>(rank));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random_buffer = [&](std::size_t n, float scale) {
    std::vector<float> host(n);
    for (auto& v : host) v = scale * normal(rng);
    DeviceBuffer b = backend->alloc(n * sizeof(float));
    backend->copy_to_device(b.data(), host.data(), n * sizeof(float));
    return b;
  };
  const DeviceBuffer x = random_buffer(static_cast<std::size_t>(t * d), 1.0f);
  const DeviceBuffer w_in = random_buffer(static_cast<std::size_t>(local * 2 * ffn * d), 1.0f / std::sqrt(float(d)));
  const DeviceBuffer w_out = random_buffer(static_cast<std::size_t>(local * d * ffn), 1.0f / std::sqrt(float(ffn)));
  DeviceBuffer y = backend->alloc(static_cast<std::size_t>(t * d) * sizeof(float));
  std::vector<WeightView> in_views, out_views;
  for (int64_t e = 0; e < local; ++e) {  // two GEMM groups per expert: routed rows, padding
    for (int part = 0; part < 2; ++part) {
      in_views.push_back({w_in.as<float>() + e * 2 * ffn * d, DType::f32, 2 * ffn, d, d});
      out_views.push_back({w_out.as<float>() + e * d * ffn, DType::f32, d, ffn, ffn});
    }
  }
  Workspace ws(*backend), expert_ws(*backend);
  std::unique_ptr<Dispatcher> dispatcher;
  if (world == 1)
    dispatcher = std::make_unique<LocalDispatcher>(ws);
  else
    dispatcher = std::make_unique<AllToAllDispatcher>(ws, *alltoall, *world_comm, placement);

  if (rank == 0) {
    fmt::print("# {}\n", command);
    fmt::print(
        "# {} ranks ({} per node, {} all-to-all), {} tokens per rank, d {}, {} experts of ffn {} (SwiGLU, "
        "f32), top-{}, median of {} runs\n",
        world, topology.ranks_per_node, o.alltoall, t, d, o.experts, o.ffn, k, o.reps);
    fmt::print("{:>8} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>9} {:>10} {:>10}\n", "routing", "gating", "capacity",
               "rows/rank", "dropped", "padded", "time(ms)", "tokens/s", "vs dynamic");
  }
  double worst_ratio = 0;
  for (const bool skewed : {false, true}) {
    const Routing routing = draw_routing(t, o.experts, k, skewed ? o.skew : 0.0, rng);
    double dynamic_time = 0;
    std::vector<double> factors = {0.0};  // 0 = dynamic
    factors.insert(factors.end(), o.capacity_factors.begin(), o.capacity_factors.end());
    for (const double factor : factors) {
      DispatchPlan plan;
      DispatchHandle handle;
      int64_t rows = 0;
      auto iteration = [&] {
        if (factor == 0.0)
          plan.build_dynamic(routing.ids.data(), routing.weights.data(), t, k, o.experts);
        else
          plan.build_static(routing.ids.data(), routing.weights.data(), t, k, o.experts,
                            static_capacity(t, k, o.experts, factor));
        dispatcher->dispatch(0, plan, x.as<float>(), d, handle);
        rows = handle.num_rows();
        const float* expert_rows = handle.expert_rows;
        const int64_t* offsets = handle.local_offsets.data();
        float* in = expert_ws.get<float>(0, static_cast<std::size_t>(rows * 2 * ffn));
        float* act = expert_ws.get<float>(1, static_cast<std::size_t>(rows * ffn));
        float* out = expert_ws.get<float>(2, static_cast<std::size_t>(rows * d));
        backend->grouped_linear(expert_rows, offsets, 2 * local, in_views.data(), in);
        backend->swiglu(in, in + ffn, 2 * ffn, act, rows, ffn);
        backend->grouped_linear(act, offsets, 2 * local, out_views.data(), out);
        dispatcher->combine(handle, out, y.as<float>());
        backend->synchronize();
      };
      iteration();  // warm-up: sizes the workspaces
      std::vector<double> times;
      for (int rep = 0; rep < o.reps; ++rep) {
        MOE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
        const double start = now_seconds();
        iteration();
        times.push_back(now_seconds() - start);
      }
      std::sort(times.begin(), times.end());
      const double time = max_over_ranks(times[times.size() / 2]);
      const double max_rows = max_over_ranks(static_cast<double>(rows));
      const double all_rows = sum_over_ranks(static_cast<double>(rows));
      const double dropped = sum_over_ranks(static_cast<double>(plan.dropped));
      const double padded = sum_over_ranks(static_cast<double>(plan.padded));
      if (factor == 0.0) dynamic_time = time;
      const double ratio = time / dynamic_time;
      if (factor > 0.0) worst_ratio = std::max(worst_ratio, ratio);
      if (rank == 0)
        fmt::print("{:>8} {:>8} {:>8} | {:>9.0f} {:>7.1f}% {:>7.1f}% | {:>9.2f} {:>10.0f} {:>10.2f}\n",
                   skewed ? fmt::format("zipf{:.1f}", o.skew) : "uniform", factor == 0.0 ? "dynamic" : "static",
                   factor == 0.0 ? std::string("-") : fmt::format("{:.2f}", factor), max_rows,
                   100.0 * dropped / static_cast<double>(t * k * world), all_rows > 0 ? 100.0 * padded / all_rows : 0.0,
                   time * 1e3, static_cast<double>(t * world) / time, ratio);
    }
  }
  if (rank == 0) fmt::print("PERFORMANCE gating worst_static_over_dynamic={:.2f}\n", worst_ratio);
}

}  // namespace moe
