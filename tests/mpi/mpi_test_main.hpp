#pragma once
// The shared main of the MPI test programs (mpi_test_main.cpp): MPI_Init, GoogleTest, rank 0
// prints the progress, other ranks print only their failures (one line naming the rank), and any
// rank's failure fails every rank. `--ranks-per-node R` (0 = real nodes) is read into
// ranks_per_node_option().
namespace moe::test {

int ranks_per_node_option();
int world_rank();
int world_size();

}  // namespace moe::test
