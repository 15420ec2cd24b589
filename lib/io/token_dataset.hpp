#pragma once
// The token dataset: padded (tokens [N, S] + lengths [N]) or ragged (tokens [total] +
// offsets [N+1]), optionally with score_from [N] (windows of long documents: positions before it
// are context only); see docs/formats.md. Sequence lengths are kept in memory (8 bytes per
// sequence, 4 more with score_from); token ids are read a batch at a time.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/h5.hpp"

namespace moe {

// One batch of whole sequences, packed without padding: sequence s owns ids
// [seq_offsets[s], seq_offsets[s + 1]). Host memory, reused from batch to batch.
struct TokenBatch {
  int64_t first_seq = 0;
  int64_t num_seqs = 0;
  std::vector<int32_t> ids;
  std::vector<int64_t> seq_offsets;
  // Per sequence: the first position whose log-probability counts (earlier ones are context of a
  // window); empty when the input has no score_from, which means 0 for every sequence.
  std::vector<int32_t> score_from;
  int64_t num_tokens() const { return seq_offsets.empty() ? 0 : seq_offsets.back(); }
  int64_t max_length() const;
};

class TokenDataset {
 public:
  TokenDataset(const std::string& path, MPI_Comm comm);

  const std::string& path() const { return file_.path(); }
  bool ragged() const { return ragged_; }
  int64_t num_seqs() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t width() const { return width_; }  // S for padded input, 0 for ragged
  int64_t length(int64_t seq) const { return lengths_[static_cast<std::size_t>(seq)]; }
  int64_t total_tokens() const { return total_tokens_; }
  const std::vector<int64_t>& ragged_offsets() const { return starts_; }

  // Reads every token once, before heavy work: ids must lie in [0, vocab_size) and lengths in
  // [0, max_positions], and a file written by moe-prepare must not come from a tokenizer with more
  // tokens than vocab_size. Also computes checksum(). Errors name the file, sequence and position.
  void validate(int64_t vocab_size, int64_t max_positions);
  const std::string& checksum() const { return checksum_; }

  // Reads sequences [first, first + count) into batch (its vectors are reused).
  void read(int64_t first, int64_t count, TokenBatch& batch) const;

 private:
  void read_score_from();

  h5::File file_;
  bool ragged_ = false;
  int64_t width_ = 0;
  int64_t total_tokens_ = 0;
  std::vector<int64_t> lengths_;
  std::vector<int64_t> starts_;      // ragged: offsets [N+1]
  std::vector<int32_t> score_from_;  // empty when the file has none
  std::string checksum_;
  mutable std::vector<int32_t> padded_rows_;  // staging for padded reads
};

}  // namespace moe
