#include "io/token_dataset.hpp"

#include <algorithm>
#include <variant>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/memory_budget.hpp"

namespace moe {

namespace {
constexpr int64_t kScanTokens = int64_t{1} << 20;  // tokens per read while validating
// Deflate, the strongest filter parallel HDF5 applies, compresses at most about 1032:1.
constexpr double kMaxCompression = 1100;

// A few bytes of file can declare any shape: chunks never written read as fill values. A
// dataset that stores far less than any filter could compress its declared size to is refused
// before it is read or scanned.
void check_stored(const std::string& path, const char* name, const h5::DatasetInfo& info) {
  double declared = static_cast<double>(info.element_bytes);
  for (int64_t s : info.shape) declared *= static_cast<double>(s);
  MOE_CHECK(declared <= kMaxCompression * static_cast<double>(info.stored_bytes) + 65536,
            "{}: dataset '{}' declares {} of values but stores only {} (chunks never written?)", path, name,
            format_bytes(declared), format_bytes(static_cast<double>(info.stored_bytes)));
}
}  // namespace

int64_t TokenBatch::max_length() const {
  int64_t longest = 0;
  for (int64_t s = 0; s < num_seqs; ++s) longest = std::max(longest, seq_offsets[s + 1] - seq_offsets[s]);
  return longest;
}

TokenDataset::TokenDataset(const std::string& path, MPI_Comm comm) : file_(h5::File::open_read(path, comm)) {
  const h5::DatasetInfo tokens = file_.info("tokens");
  MOE_CHECK(tokens.kind == h5::ElementKind::i32, "{}: dataset 'tokens' has type {}, expected int32", path,
            tokens.type_name);
  check_stored(path, "tokens", tokens);
  if (tokens.shape.size() == 2) {
    width_ = tokens.shape[1];
    const h5::DatasetInfo lengths = file_.info("lengths");
    check_stored(path, "lengths", lengths);
    MOE_CHECK(lengths.kind == h5::ElementKind::i32 || lengths.kind == h5::ElementKind::i64,
              "{}: dataset 'lengths' has type {}, expected int32", path, lengths.type_name);
    MOE_CHECK(lengths.shape.size() == 1 && lengths.shape[0] == tokens.shape[0],
              "{}: dataset 'lengths' must have shape [{}] to match 'tokens' [{}, {}]", path, tokens.shape[0],
              tokens.shape[0], tokens.shape[1]);
    lengths_ = file_.read_all<int64_t>("lengths");
    for (std::size_t n = 0; n < lengths_.size(); ++n) {
      MOE_CHECK(lengths_[n] >= 0, "{}: lengths[{}] = {} is negative", path, n, lengths_[n]);
      MOE_CHECK(lengths_[n] <= width_, "{}: lengths[{}] = {} exceeds the padded width {} of 'tokens'", path, n,
                lengths_[n], width_);
      total_tokens_ += lengths_[n];
    }
  } else if (tokens.shape.size() == 1) {
    ragged_ = true;
    const h5::DatasetInfo offsets = file_.info("offsets");
    MOE_CHECK(offsets.kind == h5::ElementKind::i64 || offsets.kind == h5::ElementKind::i32,
              "{}: dataset 'offsets' has type {}, expected int64", path, offsets.type_name);
    MOE_CHECK(offsets.shape.size() == 1 && offsets.shape[0] >= 1, "{}: dataset 'offsets' must be 1-D with N+1 entries",
              path);
    check_stored(path, "offsets", offsets);
    // offsets, then the lengths derived from them: 16 bytes per sequence.
    require_memory(fmt::format("{}: the offsets of {} sequences", path, offsets.shape[0] - 1),
                   16.0 * static_cast<double>(offsets.shape[0]));
    starts_ = file_.read_all<int64_t>("offsets");
    MOE_CHECK(starts_.front() == 0, "{}: offsets[0] = {} must be 0", path, starts_.front());
    MOE_CHECK(starts_.back() == tokens.shape[0], "{}: offsets[{}] = {} must equal the {} tokens", path,
              starts_.size() - 1, starts_.back(), tokens.shape[0]);
    lengths_.resize(starts_.size() - 1);
    for (std::size_t n = 0; n + 1 < starts_.size(); ++n) {
      lengths_[n] = starts_[n + 1] - starts_[n];
      MOE_CHECK(lengths_[n] >= 0, "{}: offsets decrease at sequence {} (length {} is negative)", path, n, lengths_[n]);
    }
    total_tokens_ = tokens.shape[0];
  } else {
    fail("{}: dataset 'tokens' must be 2-D (padded, with 'lengths') or 1-D (ragged, with 'offsets'), got {}-D", path,
         tokens.shape.size());
  }
  read_score_from();
}

void TokenDataset::read_score_from() {
  if (!file_.has("score_from")) return;
  const h5::DatasetInfo info = file_.info("score_from");
  MOE_CHECK(info.kind == h5::ElementKind::i32 || info.kind == h5::ElementKind::i64,
            "{}: dataset 'score_from' has type {}, expected int32", path(), info.type_name);
  MOE_CHECK(info.shape == std::vector<int64_t>{num_seqs()}, "{}: dataset 'score_from' must have shape [{}]", path(),
            num_seqs());
  const std::vector<int64_t> from = file_.read_all<int64_t>("score_from");
  score_from_.resize(from.size());
  for (std::size_t n = 0; n < from.size(); ++n) {
    MOE_CHECK(from[n] >= 0 && from[n] <= lengths_[n], "{}: score_from[{}] = {} is outside [0, {}] (the row's length)",
              path(), n, from[n], lengths_[n]);
    score_from_[n] = static_cast<int32_t>(from[n]);
  }
}

void TokenDataset::validate(int64_t vocab_size, int64_t max_positions) {
  // moe-prepare records its tokenizer's size: a larger one can emit ids the model does not have,
  // even if this file happens to contain none of them.
  const AttrMap attrs = file_.read_attributes();
  if (const auto it = attrs.find("tokenizer_vocab_size"); it != attrs.end()) {
    const auto* tokenizer_vocab = std::get_if<int64_t>(&it->second);
    MOE_CHECK(tokenizer_vocab, "{}: attribute tokenizer_vocab_size is not an integer", path());
    MOE_CHECK(*tokenizer_vocab <= vocab_size,
              "{}: attribute tokenizer_vocab_size = {}: the tokenizer has more tokens than the model's vocab_size {}",
              path(), *tokenizer_vocab, vocab_size);
  }
  Fnv1a hash;
  for (std::size_t n = 0; n < lengths_.size(); ++n) {
    MOE_CHECK(lengths_[n] <= max_positions, "{}: sequence {} has length {}, longer than the model's max_positions {}",
              path(), n, lengths_[n], max_positions);
    hash.update_value(lengths_[n]);
  }
  // score_from changes which results count, so it is part of the input's identity.
  if (!score_from_.empty()) hash.update(score_from_.data(), sizeof(int32_t) * score_from_.size());
  auto check_ids = [&](const int32_t* ids, int64_t count, int64_t seq, int64_t pos0) {
    for (int64_t i = 0; i < count; ++i)
      MOE_CHECK(ids[i] >= 0 && ids[i] < vocab_size,
                "{}: token id {} at sequence {}, position {} is outside the vocabulary [0, {})", path(), ids[i], seq,
                pos0 + i, vocab_size);
    hash.update(ids, sizeof(int32_t) * static_cast<std::size_t>(count));
  };
  std::vector<int32_t> buffer;
  if (ragged_) {
    for (int64_t t0 = 0; t0 < total_tokens_; t0 += kScanTokens) {
      const int64_t count = std::min(kScanTokens, total_tokens_ - t0);
      buffer.resize(static_cast<std::size_t>(count));
      file_.read<int32_t>("tokens", {t0}, {count}, buffer.data());
      // Find the sequence of each chunk's first token only for messages: walk with the offsets.
      auto seq_at = [&](int64_t t) {
        return static_cast<int64_t>(std::upper_bound(starts_.begin(), starts_.end(), t) - starts_.begin()) - 1;
      };
      for (int64_t i = 0; i < count; ++i)
        if (buffer[i] < 0 || buffer[i] >= vocab_size) {
          const int64_t seq = seq_at(t0 + i);
          check_ids(&buffer[i], 1, seq, t0 + i - starts_[seq]);
        }
      hash.update(buffer.data(), sizeof(int32_t) * static_cast<std::size_t>(count));
    }
  } else {
    const int64_t rows_per_read = std::max<int64_t>(1, kScanTokens / std::max<int64_t>(width_, 1));
    require_memory(fmt::format("{}: reading rows of width {}", path(), width_),
                   4.0 * static_cast<double>(rows_per_read) * static_cast<double>(width_));
    for (int64_t r0 = 0; r0 < num_seqs(); r0 += rows_per_read) {
      const int64_t rows = std::min(rows_per_read, num_seqs() - r0);
      buffer.resize(static_cast<std::size_t>(rows * width_));
      file_.read<int32_t>("tokens", {r0, 0}, {rows, width_}, buffer.data());
      for (int64_t r = 0; r < rows; ++r) check_ids(buffer.data() + r * width_, lengths_[r0 + r], r0 + r, 0);
    }
  }
  checksum_ = hash.hex();
}

void TokenDataset::read(int64_t first, int64_t count, TokenBatch& batch) const {
  MOE_CHECK(first >= 0 && count >= 0 && first + count <= num_seqs(), "{}: batch [{}, {}) is outside the {} sequences",
            path(), first, first + count, num_seqs());
  batch.first_seq = first;
  batch.num_seqs = count;
  batch.seq_offsets.resize(static_cast<std::size_t>(count + 1));
  batch.seq_offsets[0] = 0;
  for (int64_t s = 0; s < count; ++s) batch.seq_offsets[s + 1] = batch.seq_offsets[s] + lengths_[first + s];
  batch.ids.resize(static_cast<std::size_t>(batch.seq_offsets[count]));
  if (score_from_.empty())
    batch.score_from.clear();
  else
    batch.score_from.assign(score_from_.begin() + first, score_from_.begin() + first + count);
  if (count == 0) return;
  if (ragged_) {
    file_.read<int32_t>("tokens", {starts_[first]}, {batch.seq_offsets[count]}, batch.ids.data());
    return;
  }
  padded_rows_.resize(static_cast<std::size_t>(count * width_));
  file_.read<int32_t>("tokens", {first, 0}, {count, width_}, padded_rows_.data());
  for (int64_t s = 0; s < count; ++s)
    std::copy_n(padded_rows_.data() + s * width_, lengths_[first + s], batch.ids.data() + batch.seq_offsets[s]);
}

}  // namespace moe
