// Loading reads plain layouts (contiguous datasets, expert tensors chunked one expert per chunk)
// with pread on the OpenMP threads and checks each block while in cache; other boxes (column
// slices of tensor parallelism) go through HDF5. Both paths must give the same bytes and the same
// model checksum, for f32 and bf16 checkpoints from moe-synth.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/box_extents.hpp"
#include "io/checkpoint.hpp"
#include "support/h5_edit.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

// model_checksum gathers over a communicator: MPI as a singleton for this program.
class MpiEnvironment : public testing::Environment {
 public:
  void SetUp() override { MPI_Init(nullptr, nullptr); }
  void TearDown() override { MPI_Finalize(); }
};
[[maybe_unused]] testing::Environment* const kMpi = testing::AddGlobalTestEnvironment(new MpiEnvironment);

// A fresh seed per checkpoint, printed with any failure.
std::string fresh_seed() {
  return std::to_string(std::random_device{}() % 1000000);
}

std::vector<std::byte> read_box(CheckpointReader& ckpt, const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<int64_t>& offset, const std::vector<int64_t>& count) {
  return ckpt.read(name, shape, offset, count).bytes;
}

// A fresh mixtral-tiny checkpoint in the parameter's dtype, in a scratch folder of the test's own.
class CheckpointRead : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<ScratchDir>("checkpoint_read_" + GetParam());
    model_ = dir_->file("model.h5");
    seed_ = fresh_seed();
    const CommandResult r = run_command(program("moe-synth") + " model " + input_file("models/mixtral-tiny.yaml") +
                                        " " + model_ + " --dtype " + GetParam() + " --seed " + seed_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::unique_ptr<ScratchDir> dir_;
  std::string model_, seed_;
};

TEST_P(CheckpointRead, PlainReadsEqualHdf5ReadsInBytesAndChecksum) {
  SCOPED_TRACE("moe-synth seed " + seed_);
  const std::string& model = model_;

  CheckpointReader whole(model, MPI_COMM_SELF), pieces(model, MPI_COMM_SELF);
  int plain_2d = 0, plain_3d = 0, through_hdf5 = 0;
  for (const std::string& name : whole.file().dataset_names()) {
    SCOPED_TRACE(name);
    const h5::DatasetInfo info = whole.file().info(name);
    const std::vector<int64_t>& shape = info.shape;
    const std::vector<int64_t> zero(shape.size(), 0);
    const std::size_t element = info.element_bytes;
    ASSERT_TRUE(box_extents(whole.file(), name, shape, zero, shape, element).has_value())
        << "a whole dataset as moe-synth writes it should be read with pread";
    (shape.size() == 3 ? plain_3d : plain_2d) += shape.size() >= 2 ? 1 : 0;
    const std::vector<std::byte> all = read_box(whole, name, shape, zero, shape);

    // The same dataset in two boxes split along its last dimension: column slices (HDF5) when
    // there is more than one row, flat runs (pread) for vectors.
    const int64_t cols = shape.back(), half = cols / 2;
    std::vector<int64_t> count_a = shape, count_b = shape, offset_b = zero;
    count_a.back() = half;
    count_b.back() = cols - half;
    offset_b.back() = half;
    if (shape.size() >= 2 && half > 0) {
      EXPECT_FALSE(box_extents(pieces.file(), name, shape, zero, count_a, element).has_value());
      ++through_hdf5;
    }
    const std::vector<std::byte> a = read_box(pieces, name, shape, zero, count_a);
    const std::vector<std::byte> b = read_box(pieces, name, shape, offset_b, count_b);
    // Interleave the halves back into rows and compare with the whole read.
    const int64_t rows = static_cast<int64_t>(all.size() / element) / cols;
    std::vector<std::byte> joined;
    joined.reserve(all.size());
    for (int64_t row = 0; row < rows; ++row) {
      const auto ra = a.begin() + static_cast<std::ptrdiff_t>(row * half * static_cast<int64_t>(element));
      const auto rb = b.begin() + static_cast<std::ptrdiff_t>(row * (cols - half) * static_cast<int64_t>(element));
      joined.insert(joined.end(), ra, ra + static_cast<std::ptrdiff_t>(half * static_cast<int64_t>(element)));
      joined.insert(joined.end(), rb, rb + static_cast<std::ptrdiff_t>((cols - half) * static_cast<int64_t>(element)));
    }
    EXPECT_TRUE(joined == all) << "the two paths read different bytes";
  }
  EXPECT_GT(plain_3d, 0) << "no expert tensor was read with pread";
  EXPECT_GT(plain_2d, 0);
  EXPECT_GT(through_hdf5, 0);
  EXPECT_EQ(whole.model_checksum(MPI_COMM_SELF), pieces.model_checksum(MPI_COMM_SELF));
}

// A box of whole experts of a chunked expert tensor (what expert parallelism reads) is a plain
// run too, read with pread, with the same bytes as HDF5's column slices assembled.
TEST_P(CheckpointRead, ExpertAndRowBoxesArePlainRuns) {
  SCOPED_TRACE("moe-synth seed " + seed_);
  const std::string& model = model_;
  CheckpointReader ckpt(model, MPI_COMM_SELF);
  int checked = 0;
  for (const std::string& name : ckpt.file().dataset_names()) {
    const h5::DatasetInfo info = ckpt.file().info(name);
    if (info.shape.size() != 3 || info.shape[0] < 3) continue;
    SCOPED_TRACE(name);
    const std::vector<int64_t>& shape = info.shape;
    const std::vector<int64_t> offset = {1, 0, 0}, count = {2, shape[1], shape[2]};
    const auto extents = box_extents(ckpt.file(), name, shape, offset, count, info.element_bytes);
    ASSERT_TRUE(extents.has_value());
    EXPECT_EQ(extents->first_element, shape[1] * shape[2]);
    const std::vector<std::byte> plain = read_box(ckpt, name, shape, offset, count);
    // Column by column through HDF5 (each a non-run box), assembled.
    std::vector<std::byte> assembled(plain.size());
    const auto element = static_cast<int64_t>(info.element_bytes);
    for (int64_t c = 0; c < shape[2]; ++c) {
      const std::vector<std::byte> column = read_box(ckpt, name, shape, {1, 0, c}, {2, shape[1], 1});
      for (int64_t i = 0; i < 2 * shape[1]; ++i)
        std::copy_n(column.begin() + i * element, element, assembled.begin() + (i * shape[2] + c) * element);
    }
    EXPECT_TRUE(plain == assembled);
    ++checked;
  }
  EXPECT_GT(checked, 0) << "mixtral-tiny should have expert tensors of 3 or more experts";
}

// mmap_weights: a box that lies in the file as one run (a whole dataset, rows of one, whole
// experts) is used in place in the mapped file, with the bytes, checks and checksum of a read;
// other boxes (column slices) are not mappable and nothing is recorded for them; mapping is off
// unless asked.
TEST_P(CheckpointRead, MappedBoxesEqualReadsInBytesAndChecksum) {
  SCOPED_TRACE("moe-synth seed " + seed_);
  CheckpointReader mapped(model_, MPI_COMM_SELF), read(model_, MPI_COMM_SELF);
  const std::vector<std::string> names = mapped.file().dataset_names();
  ASSERT_FALSE(names.empty());
  EXPECT_FALSE(mapped.can_map(names.front(), mapped.file().info(names.front()).shape, {}, {}))
      << "mapping must be off by default";
  mapped.set_map_weights(true);
  int whole = 0, experts = 0, slices = 0;
  for (const std::string& name : names) {
    const h5::DatasetInfo info = mapped.file().info(name);
    if (info.shape.size() < 1 || info.shape.size() > 3) continue;
    SCOPED_TRACE(name);
    const std::vector<int64_t>& shape = info.shape;
    const std::vector<int64_t> zero(shape.size(), 0);
    // The whole dataset, or one expert of an expert tensor: one run, mapped in place.
    std::vector<int64_t> offset = zero, count = shape;
    if (shape.size() == 3) {
      offset[0] = shape[0] - 1;
      count[0] = 1;
    }
    ASSERT_TRUE(mapped.can_map(name, shape, offset, count));
    const auto* at = static_cast<const std::byte*>(mapped.map_box(name, shape, offset, count));
    ASSERT_NE(at, nullptr);
    const std::vector<std::byte> bytes = read_box(read, name, shape, offset, count);
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), at)) << "mapped bytes differ from the read ones";
    ++(shape.size() == 3 ? experts : whole);
    // The rest of an expert tensor, read (mixing both paths in one checksum); a column slice of
    // a matrix: not one run, so not mappable, and read instead.
    if (shape.size() == 3) {
      const std::vector<int64_t> rest_count = {shape[0] - 1, shape[1], shape[2]};
      EXPECT_FALSE(read_box(mapped, name, shape, zero, rest_count).empty());
      EXPECT_FALSE(read_box(read, name, shape, zero, rest_count).empty());
    } else if (shape.size() == 2 && shape[1] > 1 && shape[0] > 1) {
      const std::vector<int64_t> cols = {shape[0], shape[1] / 2};
      EXPECT_FALSE(mapped.can_map(name, shape, {0, 0}, cols));
      EXPECT_EQ(mapped.map_box(name, shape, {0, 0}, cols), nullptr);
      ++slices;
    }
  }
  EXPECT_GT(whole, 0);
  EXPECT_GT(experts, 0);
  EXPECT_GT(slices, 0);
  EXPECT_EQ(mapped.model_checksum(MPI_COMM_SELF), read.model_checksum(MPI_COMM_SELF));
}

// A non-finite weight in a mapped box stops the load as a read does, naming dataset and place.
TEST_P(CheckpointRead, NonFiniteWeightInAMappedBoxIsRefused) {
  SCOPED_TRACE("moe-synth seed " + seed_);
  const std::string name = "layers/0/attn/o_proj";
  std::vector<int64_t> shape;
  {
    CheckpointReader probe(model_, MPI_COMM_SELF);
    shape = probe.file().info(name).shape;
  }
  h5_set_f32(model_, name, {1, 2}, std::numeric_limits<float>::infinity());
  CheckpointReader ckpt(model_, MPI_COMM_SELF);
  ckpt.set_map_weights(true);
  ASSERT_TRUE(ckpt.can_map(name, shape, {0, 0}, shape));
  try {
    ckpt.map_box(name, shape, {0, 0}, shape);
    FAIL() << "an inf weight was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dataset '" + name + "' holds a non-finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[1, 2]"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CheckpointRead, testing::Values("f32", "bf16"));

}  // namespace
}  // namespace moe::test
