// moe-bench alltoall: size = bytes each rank sends in total, split evenly over all ranks (self
// included, as nccl-tests does); time = max over ranks of each rank's median; algbw = size / time;
// busbw = algbw * (n - 1) / n; #wrong = received bytes that differ from the known payload, summed
// over ranks; msgs = payload messages one call sends, max over ranks.
// ovl% = how much of the exchange hides behind compute when started non-blocking (AllToAll::start,
// as the dispatcher's micro-batches run it): a stand-in compute of the exchange's duration (FMAs
// in L1, no memory traffic) in 8 slices with progress() between them, then wait();
// ovl% = 100 * (t_exchange + t_compute - t_both) / min(t_exchange, t_compute): 100 is fully hidden,
// 0 is serial, below 0 costs extra. It depends on the MPI's progress engine and transport: on one
// host (shared memory, copies by the same cores) expect about 0; run it across nodes to choose
// moe.dispatch_chunks.
#include "bench_alltoall.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "comm/alltoall.hpp"
#include "comm/topology.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"

namespace moe {

namespace {

// The payload byte at `index` of the block src -> dst: distinct blocks differ, so a misplaced
// block shows up in #wrong.
uint8_t payload(int src, int dst, std::size_t index) {
  return static_cast<uint8_t>(static_cast<std::size_t>(src) * 31u + static_cast<std::size_t>(dst) * 7u + index +
                              (index >> 8) * 13u);
}

struct Row {
  double seconds = 0;
  double overlap = 0;  // percent
  uint64_t wrong = 0;
  uint64_t messages = 0;
};

// The compute stand-in: `iters` dependent FMA rounds on 8 independent lanes in registers/L1.
float spin(int64_t iters) {
  float acc[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int64_t i = 0; i < iters; ++i)
    for (float& a : acc) a = a * 0.999999f + 1e-7f;
  float sum = 0;
  for (const float a : acc) sum += a;
  return sum;
}
volatile float spin_sink = 0;  // keeps the compiler from dropping spin()

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

void bench_alltoall(const AlltoallBenchOptions& opt, const std::string& command) {
  if (opt.min_bytes < 1 || opt.min_bytes > opt.max_bytes || opt.reps < 1)
    throw CollectiveError(fmt::format("alltoall: need 1 <= --min-bytes ({}) <= --max-bytes ({}) and --reps >= 1 ({})",
                                      opt.min_bytes, opt.max_bytes, opt.reps));
  std::unique_ptr<Topology> topo;
  try {
    topo = std::make_unique<Topology>(MPI_COMM_WORLD, opt.ranks_per_node);
  } catch (const CollectiveError&) {
    throw;
  } catch (const Error& e) {
    throw CollectiveError(e.what());  // its argument checks fail on every rank together
  }
  const MPI_Comm world = topo->world_comm;
  const int n = topo->world_size, me = topo->world_rank;
  const auto peers = static_cast<std::size_t>(n);
  // Host buffers: the CPU backend stages the hierarchical variant's blocks.
  const std::unique_ptr<Backend> backend = make_backend("cpu");
  std::vector<std::unique_ptr<AllToAll>> variants;
  for (const std::string& name : alltoall_names()) variants.push_back(make_alltoall(name, *topo, *backend));

  if (me == 0) {
    fmt::print("# {}\n", command);
    fmt::print("# {} ranks: {} nodes x {} ranks per node ({}); variants:", n, topo->num_nodes, topo->ranks_per_node,
               topo->simulated_nodes ? "simulated" : "shared memory");
    for (const auto& v : variants) fmt::print(" {}", v->name());
    fmt::print(
        "\n# size = bytes each rank sends (uniform over ranks); time = max over ranks of the median of {} runs\n",
        opt.reps);
    fmt::print("# busbw = algbw * (n-1)/n; msgs = payload messages per call (max over ranks)\n");
    fmt::print("# ovl% = share of the exchange hidden behind compute when started non-blocking (see the source)\n");
    fmt::print("#{:>33}", "");
    for (const auto& v : variants) fmt::print(" {:>53}", v->name());
    fmt::print("\n#{:>11} {:>12} {:>8}", "size", "count", "type");
    for (std::size_t i = 0; i < variants.size(); ++i)
      fmt::print(" {:>10} {:>8} {:>8} {:>8} {:>8} {:>6}", "time", "algbw", "busbw", "#wrong", "msgs", "ovl%");
    fmt::print("\n#{:>11} {:>12} {:>8}", "(B)", "(elements)", "");
    for (std::size_t i = 0; i < variants.size(); ++i)
      fmt::print(" {:>10} {:>8} {:>8} {:>8} {:>8} {:>6}", "(us)", "(GB/s)", "(GB/s)", "", "", "");
    fmt::print("\n");
  }

  // Spin rounds per second on this rank, for a compute stand-in as long as an exchange.
  double spin_rate = 0;
  for (int64_t iters = 1 << 16;; iters *= 2) {
    const double start = now_seconds();
    spin_sink = spin(iters);
    const double seconds = now_seconds() - start;
    if (seconds > 0.02) {
      spin_rate = static_cast<double>(iters) / seconds;
      break;
    }
  }

  std::vector<std::size_t> bytes(peers), displs(peers);
  std::vector<uint8_t> send, recv;
  std::vector<double> busbw_sum(variants.size(), 0.0), overlap_sum(variants.size(), 0.0);
  int rows = 0;
  for (std::size_t size = opt.min_bytes; size <= opt.max_bytes; size *= 2) {
    const std::size_t block = std::max<std::size_t>(1, size / peers);
    const std::size_t total = block * peers;
    for (std::size_t p = 0; p < peers; ++p) {
      bytes[p] = block;
      displs[p] = p * block;
    }
    send.resize(total);
    recv.resize(total);
    for (int p = 0; p < n; ++p)
      for (std::size_t i = 0; i < block; ++i) send[static_cast<std::size_t>(p) * block + i] = payload(me, p, i);

    std::vector<Row> results;
    for (auto& v : variants) {
      std::fill(recv.begin(), recv.end(), uint8_t{0});
      v->reset_stats();
      auto call = [&] { v->run(send.data(), bytes.data(), displs.data(), recv.data(), bytes.data(), displs.data()); };
      call();  // warm-up: staging buffers grow here
      std::vector<double> times;
      for (int r = 0; r < opt.reps; ++r) {
        MOE_MPI_CHECK(MPI_Barrier(world));
        const double start = now_seconds();
        call();
        times.push_back(now_seconds() - start);
      }
      Row row;
      row.seconds = median(times);
      // The same exchange started, a compute of its length in slices with progress() between, wait.
      double exchange = row.seconds;
      MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &exchange, 1, MPI_DOUBLE, MPI_MAX, world));
      constexpr int kSlices = 8;
      const auto slice = static_cast<int64_t>(exchange * spin_rate / kSlices) + 1;
      std::vector<double> compute_times, both_times;
      for (int r = 0; r < opt.reps; ++r) {
        MOE_MPI_CHECK(MPI_Barrier(world));
        double start = now_seconds();
        for (int k = 0; k < kSlices; ++k) spin_sink = spin(slice);
        compute_times.push_back(now_seconds() - start);
        MOE_MPI_CHECK(MPI_Barrier(world));
        start = now_seconds();
        AllToAllRequest request;
        v->start(send.data(), bytes.data(), displs.data(), recv.data(), bytes.data(), displs.data(), request);
        for (int k = 0; k < kSlices; ++k) {
          spin_sink = spin(slice);
          v->progress();
        }
        v->wait(request);
        both_times.push_back(now_seconds() - start);
      }
      double times3[3] = {row.seconds, median(compute_times), median(both_times)};
      MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, times3, 3, MPI_DOUBLE, MPI_MAX, world));
      row.overlap = 100.0 * (times3[0] + times3[1] - times3[2]) / std::min(times3[0], times3[1]);
      for (int p = 0; p < n; ++p)
        for (std::size_t i = 0; i < block; ++i)
          row.wrong += recv[static_cast<std::size_t>(p) * block + i] != payload(p, me, i);
      row.messages = v->stats().messages / static_cast<uint64_t>(2 * opt.reps + 1);
      MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &row.seconds, 1, MPI_DOUBLE, MPI_MAX, world));
      MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &row.wrong, 1, MPI_UINT64_T, MPI_SUM, world));
      MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &row.messages, 1, MPI_UINT64_T, MPI_MAX, world));
      results.push_back(row);
    }
    if (me == 0) {
      fmt::print("{:>12} {:>12} {:>8}", total, total, "uint8");
      for (std::size_t k = 0; k < results.size(); ++k) {
        const Row& row = results[k];
        const double algbw = static_cast<double>(total) / row.seconds / 1e9;
        const double busbw = algbw * static_cast<double>(n - 1) / static_cast<double>(n);
        busbw_sum[k] += busbw;
        overlap_sum[k] += row.overlap;
        fmt::print(" {:>10.1f} {:>8.3f} {:>8.3f} {:>8} {:>8} {:>6.0f}", row.seconds * 1e6, algbw, busbw, row.wrong,
                   row.messages, row.overlap);
      }
      fmt::print("\n");
    }
    ++rows;
    if (size > opt.max_bytes / 2) break;  // no overflow of size *= 2
  }
  if (me == 0) {
    fmt::print("# Avg bus bandwidth (GB/s):");
    for (std::size_t k = 0; k < variants.size(); ++k)
      fmt::print(" {} {:.3f}", variants[k]->name(), busbw_sum[k] / rows);
    fmt::print("\nPERFORMANCE alltoall ranks={} ranks_per_node={}", n, topo->ranks_per_node);
    for (std::size_t k = 0; k < variants.size(); ++k)
      fmt::print(" avg_busbw_{}_gbs={:.3f} avg_overlap_{}_pct={:.0f}", variants[k]->name(), busbw_sum[k] / rows,
                 variants[k]->name(), overlap_sum[k] / rows);
    fmt::print("\n");
  }
}

}  // namespace moe
