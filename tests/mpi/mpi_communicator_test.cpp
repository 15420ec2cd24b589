// The MPI communicator where MPI's own limits show: exchanges past MPI's int count limit (a block
// of more than 2^31 - 1 bytes and a displacement past it, through the blocking and non-blocking
// all-to-all-v; run on 2 ranks, the big case needs about 4.3 GiB on the node and is skipped,
// saying so, where that is not free), and a failed MPI call's error.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/memory_budget.hpp"
#include "mpi_test_main.hpp"

namespace moe {
namespace {

using test::world_rank;
using test::world_size;

TEST(MessageUnit, LargestCommonPowerOfTwoCapped) {
  const std::size_t rows[] = {3 * 4096, 0, 4096 * 7};
  const std::size_t displs[] = {0, 3 * 4096, 3 * 4096};
  EXPECT_EQ(detail::mpi_message_unit(rows, 3, displs, 3), 4096u);
  const std::size_t odd[] = {4096, 12};
  EXPECT_EQ(detail::mpi_message_unit(odd, 2, nullptr, 0), 4u);
  const std::size_t bytes[] = {4096, 3};
  EXPECT_EQ(detail::mpi_message_unit(bytes, 2, nullptr, 0), 1u);
  const std::size_t zeros[] = {0, 0};
  EXPECT_EQ(detail::mpi_message_unit(zeros, 2, zeros, 2), detail::kMaxMessageUnit);
  const std::size_t huge[] = {std::size_t{3} << 40};
  EXPECT_EQ(detail::mpi_message_unit(huge, 1, nullptr, 0), detail::kMaxMessageUnit);
}

// The word at `index` of the block src -> dst.
uint64_t word(int src, int dst, std::size_t index) {
  uint64_t x = (static_cast<uint64_t>(src + 1) << 56) ^ (static_cast<uint64_t>(dst + 1) << 48) ^ index;
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ULL;
  return x ^ (x >> 29);
}

void fill(uint64_t* to, std::size_t words, int src, int dst) {
  for (std::size_t i = 0; i < words; ++i) to[i] = word(src, dst, i);
}

// Index of the first wrong word, or words when all are right.
std::size_t first_wrong(const uint64_t* at, std::size_t words, int src, int dst) {
  for (std::size_t i = 0; i < words; ++i)
    if (at[i] != word(src, dst, i)) return i;
  return words;
}

// Rank 0 sends `big` bytes to rank 1 and a small block to itself; rank 1 sends small blocks. Rank
// 1 receives the big block at displacement 0 and its own block after it (a displacement past
// 2^31 - 1); rank 0 receives both small blocks. Odd multiples of 4 KiB, as whole rows would be.
void exchange_past_int_limit(bool started) {
  ASSERT_EQ(world_size(), 2) << "run on 2 ranks";
  const int me = world_rank();
  const std::size_t big = (std::size_t{1} << 31) + 3 * 4096, small = 5 * 4096;
  const std::size_t bytes[2][2] = {{small, big}, {small, small}};  // [src][dst]
  int enough = available_memory_bytes() > (big + small) * 2 + (std::size_t{1} << 30) ? 1 : 0;
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &enough, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (!enough) GTEST_SKIP() << "needs about 4.3 GiB free on the node: skipped";

  std::vector<std::size_t> send_bytes(2), send_displs(2), recv_bytes(2), recv_displs(2);
  for (int p = 0; p < 2; ++p) {
    send_bytes[p] = bytes[me][p];
    recv_bytes[p] = bytes[p][me];
  }
  // Sends: the block for the other rank first. Receives: the other rank's block first.
  const int other = 1 - me;
  send_displs[other] = 0;
  send_displs[me] = send_bytes[other];
  recv_displs[other] = 0;
  recv_displs[me] = recv_bytes[other];
  ASSERT_TRUE(me == 0 || recv_displs[me] > static_cast<std::size_t>(INT32_MAX));

  std::vector<uint64_t> send((send_bytes[0] + send_bytes[1]) / 8), recv((recv_bytes[0] + recv_bytes[1]) / 8, 0);
  for (int p = 0; p < 2; ++p) fill(send.data() + send_displs[p] / 8, send_bytes[p] / 8, me, p);

  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  if (started) {
    CommRequest request;
    comm->start_alltoallv(send.data(), send_bytes.data(), send_displs.data(), recv.data(), recv_bytes.data(),
                          recv_displs.data(), request);
    comm->wait(request);
  } else {
    comm->alltoallv(send.data(), send_bytes.data(), send_displs.data(), recv.data(), recv_bytes.data(),
                    recv_displs.data());
  }
  for (int p = 0; p < 2; ++p) {
    const std::size_t words = recv_bytes[p] / 8;
    EXPECT_EQ(first_wrong(recv.data() + recv_displs[p] / 8, words, p, me), words)
        << "block from rank " << p << " (" << recv_bytes[p] << " bytes) on rank " << me;
  }
  EXPECT_EQ(comm->stats().bytes, send_bytes[other]);
  EXPECT_EQ(comm->stats().messages, 1u);
}

TEST(LargeMessage, BlockingAllToAllPastIntLimit) { exchange_past_int_limit(false); }
TEST(LargeMessage, StartedAllToAllPastIntLimit) { exchange_past_int_limit(true); }

// Byte counts with no common unit above 1 still fit below the limit, and a gathered block of
// odd size arrives whole.
TEST(LargeMessage, OddByteCountsStillExchange) {
  const int world = world_size(), me = world_rank();
  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  const std::size_t bytes = 4096 + 3;
  std::vector<unsigned char> send(bytes), recv(bytes * static_cast<std::size_t>(world));
  for (std::size_t i = 0; i < bytes; ++i) send[i] = static_cast<unsigned char>(word(me, 0, i));
  comm->allgather(send.data(), bytes, recv.data());
  for (int p = 0; p < world; ++p)
    for (std::size_t i = 0; i < bytes; ++i)
      ASSERT_EQ(recv[static_cast<std::size_t>(p) * bytes + i], static_cast<unsigned char>(word(p, 0, i)))
          << "byte " << i << " from rank " << p;
}

// Where MPI returns its errors (as the programs set it up: apps/main_support.hpp), the check
// macro turns one into an Error that names the call, the file and the rank.
TEST(MpiCheck, NamesTheFailedCallAndPlace) {
  MPI_Comm comm = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  MOE_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  int value = 0;
  try {
    MOE_MPI_CHECK(MPI_Bcast(&value, -1, MPI_INT, 0, comm));
    ADD_FAILURE() << "a broadcast of -1 elements was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("MPI_Bcast(&value, -1, MPI_INT, 0, comm)"), std::string::npos) << what;
    EXPECT_NE(what.find("mpi_communicator_test.cpp:"), std::string::npos) << what;
    EXPECT_NE(what.find("(rank " + std::to_string(world_rank()) + ")"), std::string::npos) << what;
  }
  MOE_MPI_CHECK(MPI_Comm_free(&comm));
}

}  // namespace
}  // namespace moe
