#pragma once
// The rank layout of a job, built once at start-up from the communicator it is given (DESIGN.md,
// "Parallel layout"): nodes (shared-memory domains, or simulated nodes of consecutive ranks), the
// cross-node groups (same local rank on every node), and the tp / dp groups of `dp x tp = world`.
//
// Invariants: every node holds `ranks_per_node` ranks; node_comm ranks are local ranks and
// cross_node_comm ranks are node indices, so world_rank_of(node, local) names every rank once.
#include <mpi.h>

#include <vector>

namespace moe {

struct Topology {
  // ranks_per_node > 0 simulates nodes of consecutive ranks (node = rank / ranks_per_node; the
  // world size must be a multiple); 0 takes nodes from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED).
  // tp ranks form a tp group of consecutive ranks (world % tp == 0). Collective over `comm`;
  // throws moe::Error on every rank for a bad ranks_per_node or tp.
  explicit Topology(MPI_Comm comm, int ranks_per_node = 0, int tp = 1);
  // Frees the communicators; never throws (an exception from one rank's destructor deadlocks the rest).
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  int world_rank_of(int node, int local) const {
    return world_of_[static_cast<std::size_t>(node * ranks_per_node + local)];
  }
  int node_of(int world) const { return node_of_[static_cast<std::size_t>(world)]; }
  int local_of(int world) const { return local_of_[static_cast<std::size_t>(world)]; }

  MPI_Comm world_comm = MPI_COMM_NULL;       // a duplicate of the communicator passed in
  MPI_Comm node_comm = MPI_COMM_NULL;        // the ranks of this node; rank = local_rank
  MPI_Comm cross_node_comm = MPI_COMM_NULL;  // same local rank on every node; rank = node
  MPI_Comm tp_comm = MPI_COMM_NULL;          // consecutive world ranks; rank = tp_rank
  MPI_Comm dp_comm = MPI_COMM_NULL;          // same tp rank; rank = dp_rank

  int world_rank = 0;
  int world_size = 1;
  int node = 0;
  int num_nodes = 1;
  int local_rank = 0;
  int ranks_per_node = 1;
  bool simulated_nodes = false;
  int tp_rank = 0;
  int tp_size = 1;
  int dp_rank = 0;
  int dp_size = 1;

 private:
  void free_comms() noexcept;

  std::vector<int> world_of_;  // [node * ranks_per_node + local] -> world rank
  std::vector<int> node_of_;   // [world rank] -> node
  std::vector<int> local_of_;  // [world rank] -> local rank
};

}  // namespace moe
