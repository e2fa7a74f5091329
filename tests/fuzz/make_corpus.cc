// Writes the seed corpus of tests/fuzz/corpus/: small serialized
// NormalizeRequests, valid and invalid, named by what they must give (see
// corpus_replay.cc). Deterministic, so re-running it reproduces the
// checked-in files byte for byte:
//   normserve_fuzz_make_corpus tests/fuzz/corpus
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "normserve/kernels/types.h"
#include "normserve/v1/normserve.pb.h"

namespace {

namespace k = ::normserve::kernels;
using normserve::v1::NormalizeRequest;
using normserve::v1::Tensor;

k::DType Kernel(normserve::v1::DType d) {
  return d == normserve::v1::FLOAT16    ? k::DType::kFloat16
         : d == normserve::v1::BFLOAT16 ? k::DType::kBFloat16
                                        : k::DType::kFloat32;
}

// A tensor of `shape` whose values follow a fixed pattern with a per-row
// offset, so statistics differ between groups.
void Fill(Tensor* t, normserve::v1::DType dtype, std::vector<int64_t> shape, float offset = 0.0f) {
  t->Clear();
  t->set_dtype(dtype);
  int64_t n = 1;
  for (int64_t d : shape) {
    t->add_shape(d);
    n *= d;
  }
  const k::DType kd = Kernel(dtype);
  std::string bytes(static_cast<size_t>(n) * k::DTypeSize(kd), '\0');
  for (int64_t i = 0; i < n; ++i) {
    const float v = offset + static_cast<float>((i * 37) % 23) * 0.25f - 2.0f + static_cast<float>(i / 16);
    k::StoreFromFloat(bytes.data(), kd, i, v);
  }
  t->set_data(std::move(bytes));
}

NormalizeRequest Layer(normserve::v1::DType dtype, std::vector<int64_t> shape) {
  NormalizeRequest r;
  r.set_request_id(7);
  r.set_kind(normserve::v1::LAYER_NORM);
  Fill(r.mutable_input(), dtype, shape);
  Fill(r.mutable_gamma(), normserve::v1::FLOAT32, {shape.back()}, 1.0f);
  Fill(r.mutable_beta(), normserve::v1::FLOAT32, {shape.back()});
  return r;
}

NormalizeRequest Channels(normserve::v1::NormKind kind, normserve::v1::DType dtype,
                          std::vector<int64_t> shape) {
  NormalizeRequest r;
  r.set_request_id(8);
  r.set_kind(kind);
  Fill(r.mutable_input(), dtype, shape);
  Fill(r.mutable_gamma(), normserve::v1::FLOAT32, {shape[1]}, 1.0f);
  Fill(r.mutable_beta(), normserve::v1::FLOAT32, {shape[1]});
  if (kind == normserve::v1::BATCH_NORM) {
    Fill(r.mutable_running_mean(), normserve::v1::FLOAT32, {shape[1]});
    Fill(r.mutable_running_var(), normserve::v1::FLOAT32, {shape[1]}, 3.0f);
  }
  if (kind == normserve::v1::GROUP_NORM) r.set_num_groups(2);
  return r;
}

// Edits a copy of `base`.
NormalizeRequest With(NormalizeRequest base, const std::function<void(NormalizeRequest*)>& edit) {
  edit(&base);
  return base;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  using namespace normserve::v1;  // NOLINT: enum values read better unqualified here.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const NormalizeRequest layer = Layer(FLOAT32, {4, 24});
  const NormalizeRequest group = Channels(GROUP_NORM, FLOAT32, {2, 4, 6});
  const NormalizeRequest batch = Channels(BATCH_NORM, FLOAT16, {3, 4, 5});

  std::vector<std::pair<std::string, std::string>> files;
  auto add = [&files](std::string name, const NormalizeRequest& r) {
    files.emplace_back(std::move(name), r.SerializeAsString());
  };

  // Accepted.
  add("ok_layer_f32", layer);
  add("ok_layer_f16_stats",
      With(Layer(FLOAT16, {3, 40}), [](NormalizeRequest* r) { r->set_return_stats(true); }));
  add("ok_layer_bf16_out_f32", With(Layer(BFLOAT16, {2, 3, 8}), [](NormalizeRequest* r) {
        r->set_output_dtype(FLOAT32);
        r->set_normalized_dims(2);
        Fill(r->mutable_gamma(), BFLOAT16, {3, 8}, 1.0f);
        r->clear_beta();
      }));
  add("ok_layer_residual", With(layer, [](NormalizeRequest* r) {
        Fill(r->mutable_residual(), FLOAT32, {4, 24}, 5.0f);
      }));
  add("ok_layer_adaptive", With(Layer(FLOAT32, {2, 3, 16}), [](NormalizeRequest* r) {
        Fill(r->mutable_gamma(), FLOAT32, {2, 1, 16});
        Fill(r->mutable_beta(), FLOAT32, {2, 3, 16});
        r->set_unit_offset(true);
      }));
  add("ok_layer_eps_zero_const", With(layer, [](NormalizeRequest* r) {
        r->set_epsilon(0.0f);
        r->mutable_input()->set_data(std::string(4 * 24 * 4, '\0'));
      }));
  add("ok_layer_nan_row", With(layer, [nan](NormalizeRequest* r) {
        k::StoreFromFloat(r->mutable_input()->mutable_data()->data(), k::DType::kFloat32, 30, nan);
      }));
  add("ok_layer_large_offset", With(layer, [](NormalizeRequest* r) {
        for (int i = 0; i < 4 * 24; ++i) {
          k::StoreFromFloat(r->mutable_input()->mutable_data()->data(), k::DType::kFloat32, i,
                            40000.0f + i % 4);
        }
      }));
  add("ok_rms_f16", With(Layer(FLOAT16, {5, 33}), [](NormalizeRequest* r) {
        r->set_kind(RMS_NORM);
        r->clear_beta();
        r->set_return_stats(true);
      }));
  add("ok_rms_single_column",
      With(Layer(FLOAT32, {6, 1}), [](NormalizeRequest* r) { r->set_kind(RMS_NORM); }));
  add("ok_group_f32", group);
  add("ok_group_bf16_spatial", Channels(GROUP_NORM, BFLOAT16, {1, 6, 2, 3}));
  add("ok_instance_no_params", With(Channels(INSTANCE_NORM, FLOAT32, {2, 3, 7}), [](NormalizeRequest* r) {
        r->clear_gamma();
        r->clear_beta();
        r->set_return_stats(true);
      }));
  add("ok_batch_running_f16", batch);
  add("ok_batch_batch_stats", With(Channels(BATCH_NORM, FLOAT32, {4, 3}), [](NormalizeRequest* r) {
        r->clear_running_mean();
        r->clear_running_var();
        r->set_use_batch_stats(true);
      }));
  add("ok_backend_cpu", With(layer, [](NormalizeRequest* r) { r->set_backend(BACKEND_CPU); }));

  // Rejected: INVALID_ARGUMENT.
  add("invalid_empty_request", NormalizeRequest());
  add("invalid_kind_unknown",
      With(layer, [](NormalizeRequest* r) { r->set_kind(static_cast<NormKind>(42)); }));
  add("invalid_backend_unknown",
      With(layer, [](NormalizeRequest* r) { r->set_backend(static_cast<BackendPreference>(9)); }));
  add("invalid_input_missing", With(layer, [](NormalizeRequest* r) { r->clear_input(); }));
  add("invalid_dtype_unset",
      With(layer, [](NormalizeRequest* r) { r->mutable_input()->set_dtype(DTYPE_UNSPECIFIED); }));
  add("invalid_dtype_unknown",
      With(layer, [](NormalizeRequest* r) { r->mutable_input()->set_dtype(static_cast<DType>(17)); }));
  add("invalid_output_dtype_unknown",
      With(layer, [](NormalizeRequest* r) { r->set_output_dtype(static_cast<DType>(-3)); }));
  add("invalid_data_short",
      With(layer, [](NormalizeRequest* r) { r->mutable_input()->mutable_data()->resize(10); }));
  add("invalid_data_empty", With(layer, [](NormalizeRequest* r) { r->mutable_input()->clear_data(); }));
  add("invalid_rank0", With(layer, [](NormalizeRequest* r) {
        r->mutable_input()->clear_shape();
        r->mutable_input()->set_data(std::string(4, '\0'));
      }));
  add("invalid_rank9", With(layer, [](NormalizeRequest* r) {
        r->mutable_input()->clear_shape();
        for (int i = 0; i < 9; ++i) r->mutable_input()->add_shape(1);
        r->mutable_input()->set_data(std::string(4, '\0'));
      }));
  add("invalid_dim_negative", With(layer, [](NormalizeRequest* r) { r->mutable_input()->set_shape(0, -4); }));
  add("invalid_dim_zero", With(layer, [](NormalizeRequest* r) { r->mutable_input()->set_shape(0, 0); }));
  add("invalid_dims_overflow", With(layer, [](NormalizeRequest* r) {
        r->mutable_input()->clear_shape();
        for (int64_t d : {int64_t{1} << 40, int64_t{1} << 40, int64_t{24}}) r->mutable_input()->add_shape(d);
      }));
  add("invalid_dim_int64_max", With(layer, [](NormalizeRequest* r) {
        r->mutable_input()->set_shape(0, std::numeric_limits<int64_t>::max());
      }));
  add("invalid_eps_nan", With(layer, [nan](NormalizeRequest* r) { r->set_epsilon(nan); }));
  add("invalid_eps_inf", With(layer, [inf](NormalizeRequest* r) { r->set_epsilon(inf); }));
  add("invalid_eps_negative", With(layer, [](NormalizeRequest* r) { r->set_epsilon(-1e-5f); }));
  add("invalid_normalized_dims_huge",
      With(layer, [](NormalizeRequest* r) { r->set_normalized_dims(1 << 30); }));
  add("invalid_normalized_dims_negative",
      With(layer, [](NormalizeRequest* r) { r->set_normalized_dims(-1); }));
  add("invalid_gamma_shape",
      With(layer, [](NormalizeRequest* r) { Fill(r->mutable_gamma(), FLOAT32, {23}); }));
  add("invalid_beta_dtype",
      With(Layer(FLOAT16, {2, 8}), [](NormalizeRequest* r) { Fill(r->mutable_beta(), BFLOAT16, {8}); }));
  add("invalid_residual_shape", With(layer, [](NormalizeRequest* r) {
        Fill(r->mutable_residual(), FLOAT32, {4, 23});
      }));
  add("invalid_residual_dtype", With(layer, [](NormalizeRequest* r) {
        Fill(r->mutable_residual(), FLOAT16, {4, 24});
      }));
  add("invalid_running_stats_on_layer",
      With(layer, [](NormalizeRequest* r) { Fill(r->mutable_running_mean(), FLOAT32, {24}); }));
  add("invalid_batch_running_var_missing", With(batch, [](NormalizeRequest* r) { r->clear_running_var(); }));
  add("invalid_batch_running_mean_shape",
      With(batch, [](NormalizeRequest* r) { Fill(r->mutable_running_mean(), FLOAT32, {5}); }));
  add("invalid_group_zero_groups", With(group, [](NormalizeRequest* r) { r->set_num_groups(0); }));
  add("invalid_group_not_dividing", With(group, [](NormalizeRequest* r) { r->set_num_groups(3); }));
  add("invalid_group_rank1",
      With(group, [](NormalizeRequest* r) { Fill(r->mutable_input(), FLOAT32, {8}); }));

  // Rejected: RESOURCE_EXHAUSTED (more than kFuzzMaxTensorElements = 4096).
  add("exhausted_input_elements", Layer(FLOAT16, {65, 64}));

  // Not requests at all, or truncated ones.
  const std::string whole = layer.SerializeAsString();
  files.emplace_back("garbage_truncated", whole.substr(0, whole.size() / 2));
  files.emplace_back("garbage_bytes", std::string("\xff\xff\xff\xff\x0f\x1a\x80\x80\x80\x80\x10", 11));
  files.emplace_back("garbage_empty_input_field", std::string("\x1a\x00", 2));

  for (const auto& [name, bytes] : files) {
    const std::string path = std::string(argv[1]) + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("wrote %zu files to %s\n", files.size(), argv[1]);
  return 0;
}
