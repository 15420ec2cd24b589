#include "io/expert_extents.hpp"

#include "core/error.hpp"

namespace moe {

ExpertTensorExtent map_expert_tensor(const CheckpointReader& ckpt, const std::string& name,
                                     const std::vector<int64_t>& shape) {
  const h5::File& file = ckpt.file();
  const h5::DatasetInfo info = file.info(name);
  MOE_CHECK(info.shape == shape, "{}: dataset '{}' has another shape than the architecture's", ckpt.path(), name);
  MOE_CHECK(info.kind == h5::ElementKind::f32 || info.kind == h5::ElementKind::bf16,
            "{}: dataset '{}' has type {}, expected float32 or bf16", ckpt.path(), name, info.type_name);
  ExpertTensorExtent x;
  x.name = name;
  x.dtype = info.kind == h5::ElementKind::bf16 ? DType::bf16 : DType::f32;
  x.rows = shape[1];
  x.cols = shape[2];
  const uint64_t block = static_cast<uint64_t>(x.rows * x.cols) * dtype_size(x.dtype);
  h5::Handle ds(MOE_H5_CHECK(H5Dopen2(file.id(), name.c_str(), H5P_DEFAULT)));
  h5::Handle type(MOE_H5_CHECK(H5Dget_type(ds.get())));
  MOE_CHECK(H5Tget_order(type.get()) == H5T_ORDER_LE,
            "{}: dataset '{}' is big-endian; the expert cache reads raw bytes", ckpt.path(), name);
  h5::Handle dcpl(MOE_H5_CHECK(H5Dget_create_plist(ds.get())));
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  x.offsets.resize(static_cast<std::size_t>(shape[0]));
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t base = H5Dget_offset(ds.get());
    MOE_CHECK(base != HADDR_UNDEF, "{}: dataset '{}' has no storage", ckpt.path(), name);
    for (std::size_t e = 0; e < x.offsets.size(); ++e) x.offsets[e] = base + e * block;
    return x;
  }
  hsize_t chunk[3] = {0, 0, 0};
  MOE_CHECK(layout == H5D_CHUNKED && H5Pget_chunk(dcpl.get(), 3, chunk) == 3 && chunk[0] == 1 &&
                chunk[1] == static_cast<hsize_t>(x.rows) && chunk[2] == static_cast<hsize_t>(x.cols) &&
                H5Pget_nfilters(dcpl.get()) == 0,
            "{}: dataset '{}' is neither contiguous nor one uncompressed chunk per expert, which the expert cache "
            "needs (moe-synth and moe-convert write that; rewrite it with h5repack -l CONTI)",
            ckpt.path(), name);
  for (std::size_t e = 0; e < x.offsets.size(); ++e) {
    const hsize_t at[3] = {e, 0, 0};
    unsigned filters = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    MOE_H5_CHECK(H5Dget_chunk_info_by_coord(ds.get(), at, &filters, &addr, &size));
    MOE_CHECK(addr != HADDR_UNDEF && size == block && filters == 0,
              "{}: dataset '{}': expert {} has no stored chunk of {} bytes", ckpt.path(), name, e, block);
    x.offsets[e] = addr;
  }
  return x;
}

}  // namespace moe
