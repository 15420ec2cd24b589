#pragma once
// Collecting what each rank noticed on rank 0 (report entries, warnings). Collective over comm.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// Rank 0 gets every rank's values, rank by rank; other ranks get an empty vector.
std::vector<int64_t> gather_to_root(MPI_Comm comm, const std::vector<int64_t>& mine);
// Rank 0 gets every rank's lines without repeats (in first-seen order); others get nothing.
std::vector<std::string> gather_unique_lines(MPI_Comm comm, const std::vector<std::string>& mine);

}  // namespace moe
