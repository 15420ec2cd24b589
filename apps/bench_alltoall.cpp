// moe-bench alltoall: size = bytes each rank sends in total, split evenly over all ranks (self
// included, as nccl-tests does); time = max over ranks of each rank's median; algbw = size / time;
// busbw = algbw * (n - 1) / n; #wrong = received bytes that differ from the known payload, summed
// over ranks; msgs = payload messages one call sends, max over ranks.
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
  uint64_t wrong = 0;
  uint64_t messages = 0;
};

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
    fmt::print("#{:>33}", "");
    for (const auto& v : variants) fmt::print(" {:>46}", v->name());
    fmt::print("\n#{:>11} {:>12} {:>8}", "size", "count", "type");
    for (std::size_t i = 0; i < variants.size(); ++i)
      fmt::print(" {:>10} {:>8} {:>8} {:>8} {:>8}", "time", "algbw", "busbw", "#wrong", "msgs");
    fmt::print("\n#{:>11} {:>12} {:>8}", "(B)", "(elements)", "");
    for (std::size_t i = 0; i < variants.size(); ++i)
      fmt::print(" {:>10} {:>8} {:>8} {:>8} {:>8}", "(us)", "(GB/s)", "(GB/s)", "", "");
    fmt::print("\n");
  }

  std::vector<std::size_t> bytes(peers), displs(peers);
  std::vector<uint8_t> send, recv;
  std::vector<double> busbw_sum(variants.size(), 0.0);
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
      std::sort(times.begin(), times.end());
      Row row;
      row.seconds = times[times.size() / 2];
      for (int p = 0; p < n; ++p)
        for (std::size_t i = 0; i < block; ++i)
          row.wrong += recv[static_cast<std::size_t>(p) * block + i] != payload(p, me, i);
      row.messages = v->stats().messages / static_cast<uint64_t>(opt.reps + 1);
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
        fmt::print(" {:>10.1f} {:>8.3f} {:>8.3f} {:>8} {:>8}", row.seconds * 1e6, algbw, busbw, row.wrong,
                   row.messages);
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
      fmt::print(" avg_busbw_{}_gbs={:.3f}", variants[k]->name(), busbw_sum[k] / rows);
    fmt::print("\n");
  }
}

}  // namespace moe
