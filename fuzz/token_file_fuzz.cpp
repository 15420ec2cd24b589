// libFuzzer target: token-file validation (TokenDataset: shapes, types, lengths or offsets, ids)
// on HDF5 files built from the input: the input picks the layout, dataset types, declared shapes
// (possibly far larger than what is written: unwritten chunks read as fill values) and values.
// Fuzzing HDF5's own parser is not the point; what the program checks after opening is.
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>
#include <mpi.h>

#include <vector>

#include "core/error.hpp"
#include "fuzz_support.hpp"
#include "io/token_dataset.hpp"

namespace {

// One 1-D or 2-D dataset of `type` with declared `shape`, chunked so that it may be mostly
// unwritten; `values` fill its first elements.
void add_dataset(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& shape,
                 const std::vector<int64_t>& values) {
  const int rank = static_cast<int>(shape.size());
  hid_t space = H5Screate_simple(rank, shape.data(), nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  std::vector<hsize_t> chunk(shape.size());
  bool chunked = true;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    chunk[i] = std::max<hsize_t>(1, std::min<hsize_t>(shape[i], 64));
    chunked = chunked && shape[i] > 0;
  }
  if (chunked) H5Pset_chunk(dcpl, rank, chunk.data());
  hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  hsize_t total = 1;
  for (hsize_t s : shape) total *= s;
  const hsize_t n = std::min<hsize_t>(total, values.size());
  if (ds >= 0 && n > 0 && rank == 1) {
    hid_t mem = H5Screate_simple(1, &n, nullptr);
    const hsize_t start = 0;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
    H5Dwrite(ds, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, values.data());
    H5Sclose(mem);
  } else if (ds >= 0 && rank == 2 && shape[1] > 0) {
    const hsize_t rows = std::min<hsize_t>(shape[0], values.size() / shape[1]);
    if (rows > 0) {
      const hsize_t count[2] = {rows, shape[1]};
      const hsize_t start[2] = {0, 0};
      const hsize_t flat = rows * shape[1];
      hid_t mem = H5Screate_simple(1, &flat, nullptr);
      H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
      H5Dwrite(ds, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, values.data());
      H5Sclose(mem);
    }
  }
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
}

hsize_t dimension(FuzzedDataProvider& in) {
  // Mostly small; sometimes huge (a tiny file declaring a huge shape).
  return in.ConsumeBool() ? in.ConsumeIntegralInRange<hsize_t>(0, 40)
                          : in.ConsumeIntegralInRange<hsize_t>(0, hsize_t{1} << 40);
}

hid_t int_type(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      return H5T_NATIVE_INT32;
    case 1:
      return H5T_NATIVE_INT64;
    case 2:
      return H5T_NATIVE_FLOAT;
    default:
      return H5T_NATIVE_INT16;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  MPI_Init(argc, argv);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static moe::fuzz::ScratchFile file("tokens.h5");
  FuzzedDataProvider in(data, size);
  const bool ragged = in.ConsumeBool();
  const int64_t vocab = in.ConsumeIntegralInRange<int64_t>(1, 600);
  const int64_t max_positions = in.ConsumeIntegralInRange<int64_t>(1, 300);
  const int64_t batch = in.ConsumeIntegralInRange<int64_t>(1, 9);
  {
    const hid_t f = H5Fcreate(file.path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return 0;
    const hid_t token_type = int_type(in);
    const hid_t index_type = int_type(in);
    std::vector<hsize_t> token_shape{dimension(in)};
    if (!ragged) token_shape.push_back(dimension(in));
    std::vector<hsize_t> index_shape{dimension(in)};
    std::vector<int64_t> tokens(in.ConsumeIntegralInRange<std::size_t>(0, 512));
    for (auto& t : tokens) t = in.ConsumeIntegralInRange<int64_t>(-2, 620);
    std::vector<int64_t> index(in.ConsumeIntegralInRange<std::size_t>(0, 64));
    int64_t running = 0;
    for (auto& x : index) {
      // Offsets mostly rise (ragged); lengths stay mostly small (padded).
      running += in.ConsumeIntegralInRange<int64_t>(-1, 40);
      x = ragged ? running : in.ConsumeIntegralInRange<int64_t>(-1, 300);
    }
    if (ragged && !index.empty()) index[0] = in.ConsumeBool() ? 0 : index[0];
    add_dataset(f, "tokens", token_type, token_shape, tokens);
    add_dataset(f, ragged ? "offsets" : "lengths", index_type, index_shape, index);
    H5Fclose(f);
  }
  try {
    moe::TokenDataset ds(file.path, MPI_COMM_SELF);
    ds.validate(vocab, max_positions);
    moe::TokenBatch b;
    for (int64_t first = 0; first < ds.num_seqs(); first += batch) {
      ds.read(first, std::min(batch, ds.num_seqs() - first), b);
      for (int32_t id : b.ids)
        if (id < 0 || id >= vocab) __builtin_trap();  // validate() promised every id is in range
    }
  } catch (const moe::Error&) {
  }
  return 0;
}
