#pragma once
// Writes the results file (docs/formats.md) collectively with parallel HDF5: every rank of the
// communicator calls each method; a rank with nothing to write passes an empty batch.
#include <mpi.h>

#include <string>
#include <vector>

#include "io/h5.hpp"
#include "io/token_dataset.hpp"

namespace moe {

struct ResultAttributes {
  std::string model_checksum;
  std::string input_checksum;
  std::string run_config;
};

class ResultWriter {
 public:
  ResultWriter(const std::string& path, MPI_Comm comm, const TokenDataset& input, const ResultAttributes& attrs);

  // token_logprobs[i] is log p(ids[i] | earlier ids of its sequence) for the packed batch
  // (the entry of each sequence's first token is ignored: it is written as NaN).
  void write_batch(const TokenBatch& batch, const float* token_logprobs);
  void close();

 private:
  h5::File file_;
  bool ragged_;
  int64_t width_;
  const std::vector<int64_t>* ragged_offsets_;
  std::vector<float> rows_;  // staging, reused from batch to batch
  std::vector<double> seq_logprob_;
  std::vector<int64_t> seq_tokens_;
};

}  // namespace moe
