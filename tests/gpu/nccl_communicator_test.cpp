// NcclCommunicator on device buffers, nccl-tests style: inputs crafted so every rank knows the
// exact expected output. Runs under mpirun with any number of ranks (one GPU per rank); skips on
// every rank when there is no device or fewer devices than ranks on a node.
//
// Also the host-buffer paths (staged through the device) and the dispatcher's flat NCCL
// all-to-all. As written, this test has NOT yet run on a GPU.
#include "nccl_communicator.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/alltoall.hpp"
#include "comm/topology.hpp"
#include "core/error.hpp"
#include "cuda_backend.hpp"

namespace moe {
namespace {

template <typename T>
DeviceBuffer upload(Backend& backend, const std::vector<T>& host) {
  DeviceBuffer buffer = backend.alloc(host.size() * sizeof(T));
  backend.copy_to_device(buffer.data(), host.data(), host.size() * sizeof(T));
  return buffer;
}

template <typename T>
std::vector<T> download(Backend& backend, const DeviceBuffer& buffer, std::size_t n) {
  std::vector<T> host(n);
  backend.copy_to_host(host.data(), buffer.data(), n * sizeof(T));
  return host;
}

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MPI_Comm node;
    MOE_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int local_rank = 0, local_size = 1;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    int count = 0;
    const bool have = cuda_device_available() && cudaGetDeviceCount(&count) == cudaSuccess;
    // Decided identically on every rank (the verdict is agreed by an allreduce), so no rank
    // enters a collective that another skipped.
    int ok = have && count >= local_size ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!ok) GTEST_SKIP() << "needs one CUDA device per rank on each node";
    backend_ = std::make_unique<CudaBackend>(local_rank);
    comm_ = make_nccl_communicator(MPI_COMM_WORLD, backend_->stream());
    rank_ = comm_->rank();
    size_ = comm_->size();
  }
  void TearDown() override {
    comm_.reset();
    backend_.reset();
  }

  std::unique_ptr<CudaBackend> backend_;
  std::unique_ptr<Communicator> comm_;
  int rank_ = 0;
  int size_ = 1;
};

TEST_F(NcclCommunicatorTest, Allreduce) {
  const std::size_t n = 1000;
  std::vector<float> f(n);
  std::vector<double> d(n);
  for (std::size_t i = 0; i < n; ++i) {
    f[i] = static_cast<float>(rank_ + 1) * 0.5f + static_cast<float>(i);
    d[i] = 1e-3 * (rank_ + 1) + static_cast<double>(i);
  }
  DeviceBuffer fs = upload(*backend_, f), fm = upload(*backend_, f), ds = upload(*backend_, d);
  comm_->allreduce_sum(fs.as<float>(), n);
  comm_->allreduce_max(fm.as<float>(), n);
  comm_->allreduce_sum(ds.as<double>(), n);
  const auto got_sum = download<float>(*backend_, fs, n);
  const auto got_max = download<float>(*backend_, fm, n);
  const auto got_dsum = download<double>(*backend_, ds, n);
  const double ranks = size_;
  for (std::size_t i = 0; i < n; ++i) {
    // Exact in float for these sizes: halves and small integers.
    ASSERT_EQ(got_sum[i], static_cast<float>(0.5 * ranks * (ranks + 1) / 2 + ranks * static_cast<double>(i))) << i;
    ASSERT_EQ(got_max[i], static_cast<float>(size_) * 0.5f + static_cast<float>(i)) << i;
    ASSERT_NEAR(got_dsum[i], 1e-3 * ranks * (ranks + 1) / 2 + ranks * static_cast<double>(i), 1e-9) << i;
  }
}

TEST_F(NcclCommunicatorTest, Allgather) {
  const std::size_t bytes = 37;  // not a multiple of any element size
  std::vector<uint8_t> mine(bytes);
  for (std::size_t i = 0; i < bytes; ++i) mine[i] = static_cast<uint8_t>(rank_ * 16 + i);
  DeviceBuffer send = upload(*backend_, mine);
  DeviceBuffer recv = backend_->alloc(bytes * size_);
  comm_->reset_stats();
  comm_->allgather(send.data(), bytes, recv.data());
  const auto got = download<uint8_t>(*backend_, recv, bytes * size_);
  for (int p = 0; p < size_; ++p)
    for (std::size_t i = 0; i < bytes; ++i) ASSERT_EQ(got[p * bytes + i], static_cast<uint8_t>(p * 16 + i));
  EXPECT_EQ(comm_->stats().messages, static_cast<uint64_t>(size_ - 1));
  EXPECT_EQ(comm_->stats().bytes, static_cast<uint64_t>(size_ - 1) * bytes);
}

// How an all-to-all-v is called: on device buffers, on host buffers (staged through the device),
// or through the dispatcher's payload AllToAll (flat, hierarchical) over NCCL communicators.
enum class Path { device, host, flat_alltoall, hierarchical_alltoall };

class NcclAlltoallv : public NcclCommunicatorTest, public ::testing::WithParamInterface<Path> {};

TEST_P(NcclAlltoallv, Imbalanced) {
  // Rank r sends (r + 2p) % 5 int32 to peer p (some zero), value r * 1e6 + p * 1e3 + i.
  auto count = [](int from, int to) { return static_cast<std::size_t>((from + 2 * to) % 5); };
  std::vector<std::size_t> send_bytes(size_), send_displs(size_), recv_bytes(size_), recv_displs(size_);
  std::vector<int32_t> send;
  std::size_t recv_total = 0;
  uint64_t expect_messages = 0, expect_bytes = 0;
  for (int p = 0; p < size_; ++p) {
    send_displs[p] = send.size() * sizeof(int32_t);
    for (std::size_t i = 0; i < count(rank_, p); ++i)
      send.push_back(rank_ * 1000000 + p * 1000 + static_cast<int32_t>(i));
    send_bytes[p] = count(rank_, p) * sizeof(int32_t);
    recv_displs[p] = recv_total * sizeof(int32_t);
    recv_bytes[p] = count(p, rank_) * sizeof(int32_t);
    recv_total += count(p, rank_);
    if (p != rank_ && send_bytes[p] > 0) {
      expect_messages += 1;
      expect_bytes += send_bytes[p];
    }
  }
  send.push_back(-1);  // never empty, so the buffer exists
  std::vector<int32_t> got(recv_total + 1, -7);
  CommStats stats;
  if (GetParam() == Path::host) {
    comm_->reset_stats();
    comm_->alltoallv(send.data(), send_bytes.data(), send_displs.data(), got.data(), recv_bytes.data(),
                     recv_displs.data());
    stats = comm_->stats();  // returns with the data in host memory: no synchronisation here
  } else {
    DeviceBuffer send_dev = upload(*backend_, send);
    DeviceBuffer recv_dev = backend_->alloc((recv_total + 1) * sizeof(int32_t));
    if (GetParam() == Path::device) {
      comm_->reset_stats();
      comm_->alltoallv(send_dev.data(), send_bytes.data(), send_displs.data(), recv_dev.data(), recv_bytes.data(),
                       recv_displs.data());
      stats = comm_->stats();
    } else {
      // Real nodes (MPI_COMM_TYPE_SHARED), tp 1; the variants' own staging uses the backend's copies.
      const Topology topology(MPI_COMM_WORLD, 0, 1);
      const std::string name = GetParam() == Path::flat_alltoall ? "flat" : "hierarchical";
      auto alltoall = make_alltoall(name, topology, *backend_,
                                    [this](MPI_Comm c) { return make_nccl_communicator(c, backend_->stream()); });
      alltoall->run(send_dev.data(), send_bytes.data(), send_displs.data(), recv_dev.data(), recv_bytes.data(),
                    recv_displs.data());
      stats = alltoall->stats();
      EXPECT_EQ(alltoall->name(), name);
    }
    got = download<int32_t>(*backend_, recv_dev, recv_total);
  }
  std::size_t at = 0;
  for (int p = 0; p < size_; ++p)
    for (std::size_t i = 0; i < count(p, rank_); ++i, ++at)
      ASSERT_EQ(got[at], p * 1000000 + rank_ * 1000 + static_cast<int32_t>(i)) << "from " << p << " item " << i;
  if (GetParam() != Path::hierarchical_alltoall) {  // (hierarchical counts its two stages' messages)
    EXPECT_EQ(stats.messages, expect_messages);
    EXPECT_EQ(stats.bytes, expect_bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, NcclAlltoallv,
                         ::testing::Values(Path::device, Path::host, Path::flat_alltoall, Path::hierarchical_alltoall));

// Host buffers (the LM head's per-slice results under tp, the counts): staged through the
// device, and the call returns with the result in host memory.
TEST_F(NcclCommunicatorTest, HostBuffers) {
  std::vector<double> lse(5);
  for (std::size_t i = 0; i < lse.size(); ++i) lse[i] = rank_ + 0.25 * static_cast<double>(i);
  std::vector<double> all(lse.size() * size_, -1.0);
  comm_->allgather(lse.data(), sizeof(double) * lse.size(), all.data());
  for (int p = 0; p < size_; ++p)
    for (std::size_t i = 0; i < lse.size(); ++i) ASSERT_EQ(all[p * lse.size() + i], p + 0.25 * i) << p << " " << i;
  std::vector<float> sum(7, static_cast<float>(rank_ + 1));
  comm_->allreduce_sum(sum.data(), sum.size());
  for (float v : sum) ASSERT_EQ(v, static_cast<float>(size_ * (size_ + 1) / 2));
  std::vector<double> dsum(3, 0.5);
  comm_->allreduce_sum(dsum.data(), dsum.size());
  for (double v : dsum) ASSERT_EQ(v, 0.5 * size_);
  std::vector<float> mx(4, static_cast<float>(rank_));
  comm_->allreduce_max(mx.data(), mx.size());
  for (float v : mx) ASSERT_EQ(v, static_cast<float>(size_ - 1));
}

TEST_F(NcclCommunicatorTest, Barrier) {
  comm_->barrier();
  comm_->barrier();
  EXPECT_EQ(comm_->name(), "nccl");
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);  // a failure on any rank fails all
  MPI_Finalize();
  return rc;
}
