#pragma once
// Writes the results file (docs/formats.md) collectively with parallel HDF5: every rank of the
// communicator calls each method; a rank with nothing to write passes an empty batch.
// The file carries its resume journal: `batch_done` int32 [num_batches], 1 where global batch b
// (sequences [b * batch_size, (b + 1) * batch_size)) is written, and attributes that identify the
// run (model and input checksums, run-config hash, world size), so that a resumed run continues
// only its own output.
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
  std::string run_config_hash;  // what changes the numbers (runtime/run_fingerprint.hpp)
  int64_t world_size = 1;
  int64_t batch_size = 1;
};

class ResultWriter {
 public:
  // Creates the file (the caller's partial file, io/output_file.hpp). With resume = true the
  // existing file at `path` is continued instead, after checking that it was written by the same
  // model, input, configuration and world size (an error, the same on every rank, names what
  // differs). A failed write, flush or close ends the job from the rank that saw it (abort_job,
  // exit code 74): the other ranks may already wait in the next collective call.
  ResultWriter(const std::string& path, MPI_Comm comm, const TokenDataset& input, const ResultAttributes& attrs,
               bool resume = false);

  // The resume journal as read at start: journal()[b] != 0 when global batch b is in the file.
  const std::vector<int32_t>& journal() const { return journal_; }
  bool resumed() const { return resumed_; }
  // The open file, for what is written beside the results (the routing trace, io/trace_writer).
  h5::File& file() { return file_; }

  // token_logprobs[i] is log p(ids[i] | earlier ids of its sequence) for the packed batch
  // (the entry of each sequence's first token is ignored: it is written as NaN).
  void write_batch(const TokenBatch& batch, const float* token_logprobs);
  // Records global batch `batch` (-1: none on this rank) as done. The results are flushed first and
  // the journal after, so a journal entry never points at results that are not in the file.
  void mark_done(int64_t batch);
  // Closes the file (collective), ending the job if what was cached cannot be written.
  void close();

 private:
  void create_structure(const std::string& path, MPI_Comm comm, const TokenDataset& input,
                        const ResultAttributes& attrs, int64_t num_batches);

  h5::File file_;
  bool ragged_;
  int64_t width_;
  const std::vector<int64_t>* ragged_offsets_;
  std::vector<float> rows_;  // staging, reused from batch to batch
  std::vector<double> seq_logprob_;
  std::vector<int64_t> seq_tokens_;
  std::vector<int32_t> journal_;
  bool resumed_ = false;
};

}  // namespace moe
