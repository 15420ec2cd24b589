#include "io/box_extents.hpp"

#include "core/error.hpp"

namespace moe {

namespace {

// The box is one run of the dataset's flat order when, past its first partial dimension, every
// dimension is whole and, before it, every count is 1.
bool is_flat_run(const std::vector<int64_t>& shape, const std::vector<int64_t>& offset,
                 const std::vector<int64_t>& count) {
  std::size_t d = shape.size();
  while (d > 0 && offset[d - 1] == 0 && count[d - 1] == shape[d - 1]) --d;
  for (std::size_t i = 0; i + 1 < d; ++i)
    if (count[i] != 1) return false;
  return true;
}

int64_t flat_index(const std::vector<int64_t>& shape, const std::vector<int64_t>& offset) {
  int64_t index = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) index = index * shape[d] + offset[d];
  return index;
}

}  // namespace

std::optional<BoxExtents> box_extents(const h5::File& file, const std::string& dataset,
                                      const std::vector<int64_t>& shape, const std::vector<int64_t>& offset,
                                      const std::vector<int64_t>& count, std::size_t element_bytes) {
  if (shape.empty() || shape.size() != offset.size() || shape.size() != count.size()) return std::nullopt;
  if (!is_flat_run(shape, offset, count)) return std::nullopt;
  int64_t elements = 1;
  for (const int64_t c : count) elements *= c;
  if (elements == 0) return std::nullopt;

  h5::Handle fcpl(MOE_H5_CHECK(H5Fget_create_plist(file.id())));
  hsize_t userblock = 0;
  MOE_H5_CHECK(H5Pget_userblock(fcpl.get(), &userblock));
  if (userblock != 0) return std::nullopt;  // addresses would be relative to it
  h5::Handle ds(MOE_H5_CHECK(H5Dopen2(file.id(), dataset.c_str(), H5P_DEFAULT)));
  h5::Handle type(MOE_H5_CHECK(H5Dget_type(ds.get())));
  const hid_t want = element_bytes == 4 ? H5T_IEEE_F32LE : H5T_STD_U16LE;
  if (H5Tequal(type.get(), want) <= 0) return std::nullopt;
  h5::Handle dcpl(MOE_H5_CHECK(H5Dget_create_plist(ds.get())));
  if (H5Pget_nfilters(dcpl.get()) != 0 || H5Pget_external_count(dcpl.get()) != 0) return std::nullopt;

  BoxExtents x;
  x.first_element = flat_index(shape, offset);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t base = H5Dget_offset(ds.get());
    if (base == HADDR_UNDEF) return std::nullopt;  // never written: HDF5 gives the fill values
    x.runs.push_back({base + static_cast<uint64_t>(x.first_element) * element_bytes,
                      static_cast<uint64_t>(elements) * element_bytes});
    return x;
  }
  // Chunked one leading index per chunk: the box covers whole chunks [offset[0], + count[0]).
  const int rank = static_cast<int>(shape.size());
  if (layout != H5D_CHUNKED || rank < 2) return std::nullopt;
  std::vector<hsize_t> chunk(shape.size());
  if (H5Pget_chunk(dcpl.get(), rank, chunk.data()) != rank || chunk[0] != 1) return std::nullopt;
  uint64_t chunk_bytes = element_bytes;
  for (int d = 1; d < rank; ++d) {
    if (chunk[d] != static_cast<hsize_t>(shape[d]) || offset[d] != 0 || count[d] != shape[d]) return std::nullopt;
    chunk_bytes *= chunk[d];
  }
  std::vector<hsize_t> at(shape.size(), 0);
  for (int64_t i = 0; i < count[0]; ++i) {
    at[0] = static_cast<hsize_t>(offset[0] + i);
    unsigned filters = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    if (H5Dget_chunk_info_by_coord(ds.get(), at.data(), &filters, &addr, &size) < 0) return std::nullopt;
    if (addr == HADDR_UNDEF || size != chunk_bytes || filters != 0) return std::nullopt;
    if (!x.runs.empty() && x.runs.back().file_offset + x.runs.back().bytes == addr)
      x.runs.back().bytes += size;  // neighbouring chunks: one run
    else
      x.runs.push_back({addr, size});
  }
  return x;
}

}  // namespace moe
