#include "fuzz_entry.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/problem.h"
#include "normserve/kernels/testing/parity.h"
#include "normserve/v1/normserve.pb.h"
#include "server/core/request_conversion.h"

namespace normserve::fuzz {
namespace {

namespace k = ::normserve::kernels;
namespace kt = ::normserve::kernels::testing;

// One thread keeps runs deterministic and cheap; threading is covered by the
// kernels' own tests.
k::CpuBackend& Backend() {
  static k::CpuBackend* backend = [] {
    k::CpuBackendOptions options;
    options.threads = 1;
    return new k::CpuBackend(options);
  }();
  return *backend;
}

kt::OwnedTensor Own(const k::TensorView& view) {
  kt::OwnedTensor t;
  if (!view.present()) return t;
  t.present = true;
  t.dtype = view.dtype;
  t.shape = view.shape;
  const auto* bytes = static_cast<const uint8_t*>(view.data);
  t.bytes.assign(bytes, bytes + view.byte_size);
  return t;
}

// Checks one response tensor against the shape and dtype it must have.
std::string CheckTensor(const v1::Tensor& tensor, const char* field, k::DType dtype,
                        const std::vector<int64_t>& shape, int64_t elements) {
  if (tensor.dtype() != server::WireDType(dtype)) {
    return absl::StrCat(field, ".dtype is ", tensor.dtype(), ", want ", server::WireDType(dtype));
  }
  if (!std::equal(tensor.shape().begin(), tensor.shape().end(), shape.begin(), shape.end())) {
    return absl::StrCat(field, ".shape is [", absl::StrJoin(tensor.shape(), ","), "], want [",
                        absl::StrJoin(shape, ","), "]");
  }
  const uint64_t want = static_cast<uint64_t>(elements) * k::DTypeSize(dtype);
  if (tensor.data().size() != want) {
    return absl::StrCat(field, ".data has ", tensor.data().size(), " bytes, want ", want);
  }
  return "";
}

std::string CheckAccepted(const v1::NormalizeRequest& request, server::PreparedRequest& prepared,
                          v1::NormalizeResponse& response) {
  const k::NormProblem& p = prepared.problem;
  const int64_t elements = p.input.NumElements();
  if (std::string bad = CheckTensor(response.output(), "output", p.output_dtype, p.input.shape, elements);
      !bad.empty()) {
    return bad;
  }
  if (p.residual.present()) {
    if (std::string bad =
            CheckTensor(response.residual_out(), "residual_out", p.input.dtype, p.input.shape, elements);
        !bad.empty()) {
      return bad;
    }
  }
  if (prepared.rows != k::NumStatGroups(p)) {
    return absl::StrCat("prepared.rows is ", prepared.rows, ", NumStatGroups is ", k::NumStatGroups(p));
  }

  // The same problem as an owned case, so the parity harness can run the
  // backend and the reference on buffers of its own.
  kt::ProblemCase c;
  c.name = "fuzz";
  c.kind = p.kind;
  c.input = Own(p.input);
  c.gamma = Own(p.gamma);
  c.beta = Own(p.beta);
  c.residual = Own(p.residual);
  c.running_mean = Own(p.running_mean);
  c.running_var = Own(p.running_var);
  c.epsilon = p.epsilon;
  c.normalized_dims = p.normalized_dims;
  c.num_groups = p.num_groups;
  c.use_batch_stats = p.use_batch_stats;
  c.unit_offset = p.unit_offset;
  c.output_dtype = p.output_dtype;
  c.return_stats = request.return_stats();
  const std::vector<std::string> failures = kt::CompareToReference(Backend(), c);
  if (!failures.empty()) return absl::StrCat("CPU backend vs reference: ", absl::StrJoin(failures, "; "));

  // The server's path: the backend writing straight into the response.
  const k::KernelStatus run = Backend().Run(&p, 1);
  if (!run.ok()) return absl::StrCat("CpuBackend::Run on the prepared problem: ", run.message());
  if (response.output().data().size() != c.output.size() ||
      std::memcmp(response.output().data().data(), c.output.data(), c.output.size()) != 0) {
    return "output bits differ between the prepared problem and the owned copy";
  }
  if (p.residual.present() && (response.residual_out().data().size() != c.residual_out.size() ||
                               std::memcmp(response.residual_out().data().data(), c.residual_out.data(),
                                           c.residual_out.size()) != 0)) {
    return "residual_out bits differ between the prepared problem and the owned copy";
  }
  return "";
}

}  // namespace

FuzzVerdict CheckRequestBytes(const uint8_t* data, size_t size) {
  FuzzVerdict verdict;
  v1::NormalizeRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return verdict;
  verdict.parsed = true;

  v1::NormalizeResponse response;
  server::PreparedRequest prepared;
  verdict.status = server::PrepareRequest(request, kFuzzMaxTensorElements, &response, &prepared);
  if (!verdict.status.ok()) {
    const absl::StatusCode code = verdict.status.code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kResourceExhausted) {
      verdict.violation = absl::StrCat("rejected with unexpected code: ", verdict.status.ToString());
    } else if (verdict.status.message().empty()) {
      verdict.violation = "rejected with an empty message";
    } else if (verdict.status.message().size() > kMaxErrorMessageBytes) {
      verdict.violation = absl::StrCat("rejection message has ", verdict.status.message().size(),
                                       " bytes: ", verdict.status.message().substr(0, 200), "...");
    }
    return verdict;
  }
  verdict.violation = CheckAccepted(request, prepared, response);
  return verdict;
}

}  // namespace normserve::fuzz
