// Topology: node, cross-node, tp and dp communicators from one communicator.
#include "comm/topology.hpp"

#include "core/error.hpp"

namespace moe {

Topology::Topology(MPI_Comm comm, int ranks_per_node_option, int tp) {
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &world_rank));
  MOE_MPI_CHECK(MPI_Comm_size(comm, &world_size));
  // Argument checks come before any collective, so every rank throws together.
  MOE_CHECK(ranks_per_node_option >= 0, "parallel.ranks_per_node must be >= 0 (0: from shared memory), got {}",
            ranks_per_node_option);
  MOE_CHECK(ranks_per_node_option == 0 || world_size % ranks_per_node_option == 0,
            "parallel.ranks_per_node = {} does not divide the world size {}", ranks_per_node_option, world_size);
  MOE_CHECK(tp >= 1 && world_size % tp == 0, "parallel.tp = {} must be >= 1 and divide the world size {}", tp,
            world_size);

  try {
    MOE_MPI_CHECK(MPI_Comm_dup(comm, &world_comm));
    simulated_nodes = ranks_per_node_option > 0;
    if (simulated_nodes) {
      ranks_per_node = ranks_per_node_option;
      node = world_rank / ranks_per_node;
      local_rank = world_rank % ranks_per_node;
      num_nodes = world_size / ranks_per_node;
      MOE_MPI_CHECK(MPI_Comm_split(world_comm, node, world_rank, &node_comm));
    } else {
      MOE_MPI_CHECK(MPI_Comm_split_type(world_comm, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node_comm));
      MOE_MPI_CHECK(MPI_Comm_rank(node_comm, &local_rank));
      MOE_MPI_CHECK(MPI_Comm_size(node_comm, &ranks_per_node));
      int sizes[2] = {ranks_per_node, -ranks_per_node};  // max and -min in one reduction
      MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, world_comm));
      MOE_CHECK(sizes[0] == -sizes[1], "nodes hold between {} and {} ranks; equal node sizes are required", -sizes[1],
                sizes[0]);
      num_nodes = world_size / ranks_per_node;
      // Node index = rank of the node's local rank 0 among the local ranks 0 (ordered by world rank).
      MPI_Comm leaders = MPI_COMM_NULL;
      MOE_MPI_CHECK(MPI_Comm_split(world_comm, local_rank == 0 ? 0 : MPI_UNDEFINED, world_rank, &leaders));
      if (leaders != MPI_COMM_NULL) {
        MOE_MPI_CHECK(MPI_Comm_rank(leaders, &node));
        MOE_MPI_CHECK(MPI_Comm_free(&leaders));
      }
      MOE_MPI_CHECK(MPI_Bcast(&node, 1, MPI_INT, 0, node_comm));
    }
    MOE_MPI_CHECK(MPI_Comm_split(world_comm, local_rank, node, &cross_node_comm));

    const auto n = static_cast<std::size_t>(world_size);
    node_of_.resize(n);
    local_of_.resize(n);
    world_of_.resize(n);
    MOE_MPI_CHECK(MPI_Allgather(&node, 1, MPI_INT, node_of_.data(), 1, MPI_INT, world_comm));
    MOE_MPI_CHECK(MPI_Allgather(&local_rank, 1, MPI_INT, local_of_.data(), 1, MPI_INT, world_comm));
    for (int r = 0; r < world_size; ++r)
      world_of_[static_cast<std::size_t>(node_of(r) * ranks_per_node + local_of(r))] = r;

    tp_size = tp;
    tp_rank = world_rank % tp;
    dp_size = world_size / tp;
    dp_rank = world_rank / tp;
    MOE_MPI_CHECK(MPI_Comm_split(world_comm, dp_rank, world_rank, &tp_comm));
    MOE_MPI_CHECK(MPI_Comm_split(world_comm, tp_rank, world_rank, &dp_comm));
  } catch (...) {
    free_comms();
    throw;
  }
}

Topology::~Topology() {
  free_comms();
}

void Topology::free_comms() noexcept {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (MPI_Comm* c : {&dp_comm, &tp_comm, &cross_node_comm, &node_comm, &world_comm})
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
}

}  // namespace moe
