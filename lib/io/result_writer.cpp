#include "io/result_writer.hpp"

#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace moe {

ResultWriter::ResultWriter(const std::string& path, MPI_Comm comm, const TokenDataset& input,
                           const ResultAttributes& attrs)
    : file_(h5::File::create(path, comm)),
      ragged_(input.ragged()),
      width_(input.width()),
      ragged_offsets_(&input.ragged_offsets()) {
  const int64_t n = input.num_seqs();
  int rank = 0;
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  if (ragged_) {
    file_.create_dataset<float>("logprobs", {input.total_tokens()});
    file_.create_dataset<int64_t>("offsets", {n + 1});
    // Every rank holds the offsets; rank 0 writes them (collective call, others select nothing).
    const int64_t count = rank == 0 ? n + 1 : 0;
    file_.write<int64_t>("offsets", {0}, {count}, ragged_offsets_->data(), true);
  } else {
    file_.create_dataset<float>("logprobs", {n, width_});
  }
  file_.create_dataset<double>("seq_logprob", {n});
  file_.create_dataset<int64_t>("seq_tokens", {n});
  file_.write_attributes({{"moebatch_version", std::string(MOE_VERSION)},
                          {"model_checksum", attrs.model_checksum},
                          {"input_checksum", attrs.input_checksum},
                          {"run_config", attrs.run_config}});
}

void ResultWriter::write_batch(const TokenBatch& batch, const float* token_logprobs) {
  const int64_t count = batch.num_seqs;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  seq_logprob_.assign(static_cast<std::size_t>(count), 0.0);
  seq_tokens_.assign(static_cast<std::size_t>(count), 0);
  const int64_t row_width = ragged_ ? 0 : width_;
  rows_.resize(static_cast<std::size_t>(ragged_ ? batch.num_tokens() : count * width_));
  for (int64_t s = 0; s < count; ++s) {
    const int64_t begin = batch.seq_offsets[s];
    const int64_t length = batch.seq_offsets[s + 1] - begin;
    float* row = rows_.data() + (ragged_ ? begin : s * row_width);
    double sum = 0.0;
    for (int64_t t = 0; t < length; ++t) {
      row[t] = t == 0 ? nan : token_logprobs[begin + t];
      if (t > 0) sum += token_logprobs[begin + t];
    }
    for (int64_t t = length; t < row_width; ++t) row[t] = nan;
    seq_logprob_[s] = sum;
    seq_tokens_[s] = std::max<int64_t>(length - 1, 0);
  }
  if (ragged_) {
    const int64_t first = count > 0 ? (*ragged_offsets_)[batch.first_seq] : 0;
    file_.write<float>("logprobs", {first}, {batch.num_tokens()}, rows_.data(), true);
  } else {
    file_.write<float>("logprobs", {batch.first_seq, 0}, {count, width_}, rows_.data(), true);
  }
  file_.write<double>("seq_logprob", {batch.first_seq}, {count}, seq_logprob_.data(), true);
  file_.write<int64_t>("seq_tokens", {batch.first_seq}, {count}, seq_tokens_.data(), true);
}

void ResultWriter::close() { file_ = h5::File(); }

}  // namespace moe
