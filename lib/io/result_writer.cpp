#include "io/result_writer.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <variant>

#include "core/error.hpp"
#include "core/exit.hpp"

namespace moe {

namespace {

const char* const kJournal = "batch_done";

std::string text_attribute(const AttrMap& attrs, const char* key) {
  const auto it = attrs.find(key);
  const auto* text = it == attrs.end() ? nullptr : std::get_if<std::string>(&it->second);
  return text ? *text : "(none)";
}

int64_t int_attribute(const AttrMap& attrs, const char* key) {
  const auto it = attrs.find(key);
  const auto* value = it == attrs.end() ? nullptr : std::get_if<int64_t>(&it->second);
  return value ? *value : -1;
}

// A resumed run continues only its own output: results of another model, input, configuration or
// layout must never be mixed into it.
void check_same_run(const h5::File& file, const ResultAttributes& attrs, int64_t num_batches) {
  const std::string& path = file.path();
  const char* advice = "resuming would mix the results of two different runs; delete it or choose another output";
  MOE_CHECK(file.has(kJournal), "{}: has no resume journal ('{}'), so it is not moe-score output to resume; {}", path,
            kJournal, advice);
  const AttrMap stored = file.read_attributes();
  struct Field {
    const char* key;
    const char* what;
    const std::string* expected;
  };
  const Field identity[] = {
      {"model_checksum", "model", &attrs.model_checksum},
      {"input_checksum", "input", &attrs.input_checksum},
      {"run_config_hash", "run configuration (batch_size, parallel.*, moe.*, ...)", &attrs.run_config_hash}};
  for (const Field& field : identity) {
    const std::string found = text_attribute(stored, field.key);
    MOE_CHECK(found == *field.expected, "{}: was written with a different {} ({} {}, this run's {}); {}", path,
              field.what, field.key, found, *field.expected, advice);
  }
  const int64_t world = int_attribute(stored, "world_size");
  MOE_CHECK(world == attrs.world_size, "{}: was written by {} ranks and this run has {}; {}", path, world,
            attrs.world_size, advice);
  const auto shape = file.info(kJournal).shape;
  MOE_CHECK(shape == std::vector<int64_t>{num_batches}, "{}: its journal '{}' does not have {} batches; {}", path,
            kJournal, num_batches, advice);
}

// Runs a write, flush or close of the results; a failure ends the job at once from this rank. It
// must not unwind: destroying the open file is a collective close that the other ranks, waiting
// in their next collective write, would never join (a hang instead of an error).
template <typename Fn>
void or_abort(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    abort_job(e.what(), kIoErrorExitCode);
  }
}

}  // namespace

ResultWriter::ResultWriter(const std::string& path, MPI_Comm comm, const TokenDataset& input,
                           const ResultAttributes& attrs, bool resume)
    : ragged_(input.ragged()), width_(input.width()), ragged_offsets_(&input.ragged_offsets()) {
  const int64_t n = input.num_seqs();
  const int64_t num_batches = (n + attrs.batch_size - 1) / attrs.batch_size;
  resumed_ = resume;
  if (resumed_) {
    // Nothing of the file's structure changes: only results and journal entries are written.
    // Validation errors are the same on every rank (every rank reads the same file), so they
    // throw normally and every rank closes the file together.
    file_ = h5::File::open_readwrite(path, comm);
    check_same_run(file_, attrs, num_batches);
    journal_ = file_.read_all<int32_t>(kJournal);
    return;
  }
  or_abort([&] { create_structure(path, comm, input, attrs, num_batches); });
}

void ResultWriter::create_structure(const std::string& path, MPI_Comm comm, const TokenDataset& input,
                                    const ResultAttributes& attrs, int64_t num_batches) {
  const int64_t n = input.num_seqs();
  file_ = h5::File::create(path, comm);
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
  // The journal starts empty; rank 0 writes its zeros (collective call, others select nothing).
  journal_.assign(static_cast<std::size_t>(num_batches), 0);
  file_.create_dataset<int32_t>(kJournal, {num_batches});
  file_.write<int32_t>(kJournal, {0}, {rank == 0 ? num_batches : 0}, journal_.data(), true);
  file_.write_attributes({{"moebatch_version", std::string(MOE_VERSION)},
                          {"model_checksum", attrs.model_checksum},
                          {"input_checksum", attrs.input_checksum},
                          {"run_config", attrs.run_config},
                          {"run_config_hash", attrs.run_config_hash},
                          {"world_size", attrs.world_size},
                          {"batch_size", attrs.batch_size}});
  // From here on the file's structure is final and on disk: a run killed later leaves a file
  // that a resumed run can open.
  file_.flush();
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
    // Position 0 has no prediction; positions before score_from are a window's context only.
    const int64_t scored_from = std::max<int64_t>(1, batch.score_from.empty() ? 0 : batch.score_from[s]);
    double sum = 0.0;
    for (int64_t t = 0; t < length; ++t) {
      row[t] = t < scored_from ? nan : token_logprobs[begin + t];
      if (t >= scored_from) sum += token_logprobs[begin + t];
    }
    for (int64_t t = length; t < row_width; ++t) row[t] = nan;
    seq_logprob_[s] = sum;
    seq_tokens_[s] = std::max<int64_t>(length - scored_from, 0);
  }
  or_abort([&] {
    if (ragged_) {
      const int64_t first = count > 0 ? (*ragged_offsets_)[batch.first_seq] : 0;
      file_.write<float>("logprobs", {first}, {batch.num_tokens()}, rows_.data(), true);
    } else {
      file_.write<float>("logprobs", {batch.first_seq, 0}, {count, width_}, rows_.data(), true);
    }
    file_.write<double>("seq_logprob", {batch.first_seq}, {count}, seq_logprob_.data(), true);
    file_.write<int64_t>("seq_tokens", {batch.first_seq}, {count}, seq_tokens_.data(), true);
  });
}

void ResultWriter::mark_done(int64_t batch) {
  or_abort([&] {
    file_.flush();
    const int32_t done = 1;
    file_.write<int32_t>(kJournal, {std::max<int64_t>(batch, 0)}, {batch >= 0 ? 1 : 0}, &done, true);
    file_.flush();
  });
}

void ResultWriter::close() {
  or_abort([&] { file_.close(); });
}

}  // namespace moe
