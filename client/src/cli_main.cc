// normserve-cli: normalize .npy files on a normserve server, show its info,
// or check its health.
//
//   normserve-cli normalize --target=H:P --kind=layer_norm --input=x.npy
//       [--gamma=g.npy --beta=b.npy --residual=r.npy --running_mean=m.npy
//        --running_var=v.npy] [--dtype=bfloat16] --output=y.npy
//       [--residual_out=h.npy --stats_out=PREFIX --raw_bf16] [--eps=1e-5
//        --normalized_dims=1 --num_groups=G --use_batch_stats --unit_offset
//        --return_stats --output_dtype=float32 --backend=auto|cpu|cuda]
//   normserve-cli info --target=H:P
//   normserve-cli health --target=H:P      (exit 0 only when SERVING)
//
// Input tensors: '<f4' arrays are rounded to --dtype for the wire (default:
// float32); '<f2' arrays go as FLOAT16 and '<u2' arrays as raw BFLOAT16 bits
// when --dtype is unset or matches. gamma, beta and the running statistics go
// as FLOAT32 when they are '<f4' (the server accepts FLOAT32 parameters for
// any input dtype), otherwise as their own 16-bit type. A residual is
// converted exactly like the input. BFLOAT16 results are written as '<f4'
// (exact), or as '<u2' bit patterns with --raw_bf16.
//
// Errors print "error: CODE: message" to stderr and exit 1; bad usage exits 2.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client_flags.h"
#include "normserve/client/client.h"
#include "normserve/client/flags.h"
#include "normserve/client/npy.h"
#include "normserve/client/tensor_util.h"
#include "status_macros.h"
#include "token_file.h"

namespace normserve::client {
namespace {

constexpr char kUsage[] =
    "usage: normserve-cli normalize|info|health [flags]\n"
    "  normalize  normalize an .npy file (see --help for the flags)\n"
    "  info       print the server's version, backends and limits\n"
    "  health     exit 0 when the server reports SERVING\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return 1;
}

struct NormalizeFlags {
  std::string kind = "layer_norm";
  std::string input, gamma, beta, residual, running_mean, running_var;
  std::string dtype, output_dtype, backend = "auto";
  std::string output, residual_out, stats_out;
  double eps = -1;
  int normalized_dims = 0;
  int num_groups = 0;
  bool use_batch_stats = false, unit_offset = false, return_stats = false, raw_bf16 = false;
};

// Reads an .npy file into a wire tensor of `dtype` (DTYPE_UNSPECIFIED: the
// file's own type).
absl::StatusOr<v1::Tensor> LoadTensor(const std::string& path, v1::DType dtype) {
  ASSIGN_OR_RETURN(NpyArray a, ReadNpyFile(path));
  const v1::DType file_type = a.dtype == NpyDType::kFloat32   ? v1::FLOAT32
                              : a.dtype == NpyDType::kFloat16 ? v1::FLOAT16
                                                              : v1::BFLOAT16;
  if (dtype == v1::DTYPE_UNSPECIFIED || dtype == file_type)
    return MakeTensorFromBytes(a.data, a.shape, file_type);
  ASSIGN_OR_RETURN(std::vector<float> values,
                   TensorToFloats(MakeTensorFromBytes(a.data, a.shape, file_type)));
  return MakeTensor(values, a.shape, dtype);
}

// Parameters travel as FLOAT32 from '<f4' files and as their own type otherwise.
absl::StatusOr<v1::Tensor> LoadParam(const std::string& path) {
  return LoadTensor(path, v1::DTYPE_UNSPECIFIED);
}

absl::Status SaveTensor(const std::string& path, const v1::Tensor& t, bool raw_bf16) {
  NpyArray a;
  a.shape.assign(t.shape().begin(), t.shape().end());
  switch (t.dtype()) {
    case v1::FLOAT32:
      a.dtype = NpyDType::kFloat32;
      a.data = t.data();
      break;
    case v1::FLOAT16:
      a.dtype = NpyDType::kFloat16;
      a.data = t.data();
      break;
    case v1::BFLOAT16:
      if (raw_bf16) {
        a.dtype = NpyDType::kUInt16;
        a.data = t.data();
      } else {
        ASSIGN_OR_RETURN(std::vector<float> values, TensorToFloats(t));
        a.dtype = NpyDType::kFloat32;
        a.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
      }
      break;
    default:
      return absl::InternalError("the server returned a tensor without a dtype");
  }
  if (a.data.size() != static_cast<size_t>(a.NumElements() * NpyItemSize(a.dtype))) {
    return absl::InternalError(
        absl::StrCat("the server returned ", a.data.size(), " bytes for shape ", ShapeString(a.shape)));
  }
  return WriteNpyFile(path, a);
}

absl::Status RunNormalize(Client* client, const NormalizeFlags& f) {
  if (f.input.empty()) return absl::InvalidArgumentError("--input is required");
  if (f.output.empty()) return absl::InvalidArgumentError("--output is required");
  v1::NormalizeRequest req;
  req.set_request_id(1);
  ASSIGN_OR_RETURN(v1::NormKind kind, ParseWireKind(f.kind));
  req.set_kind(kind);
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  if (!f.dtype.empty()) {
    ASSIGN_OR_RETURN(dtype, ParseWireDType(f.dtype));
  }
  ASSIGN_OR_RETURN(*req.mutable_input(), LoadTensor(f.input, dtype));
  if (!f.residual.empty()) {
    ASSIGN_OR_RETURN(*req.mutable_residual(), LoadTensor(f.residual, req.input().dtype()));
  }
  if (!f.gamma.empty()) {
    ASSIGN_OR_RETURN(*req.mutable_gamma(), LoadParam(f.gamma));
  }
  if (!f.beta.empty()) {
    ASSIGN_OR_RETURN(*req.mutable_beta(), LoadParam(f.beta));
  }
  if (!f.running_mean.empty()) {
    ASSIGN_OR_RETURN(*req.mutable_running_mean(), LoadParam(f.running_mean));
  }
  if (!f.running_var.empty()) {
    ASSIGN_OR_RETURN(*req.mutable_running_var(), LoadParam(f.running_var));
  }
  if (f.eps >= 0) req.set_epsilon(static_cast<float>(f.eps));
  req.set_normalized_dims(f.normalized_dims);
  req.set_num_groups(f.num_groups);
  req.set_use_batch_stats(f.use_batch_stats);
  req.set_unit_offset(f.unit_offset);
  req.set_return_stats(f.return_stats || !f.stats_out.empty());
  if (!f.output_dtype.empty()) {
    ASSIGN_OR_RETURN(v1::DType out_dtype, ParseWireDType(f.output_dtype));
    req.set_output_dtype(out_dtype);
  }
  if (f.backend == "cpu") {
    req.set_backend(v1::BACKEND_CPU);
  } else if (f.backend == "cuda") {
    req.set_backend(v1::BACKEND_CUDA);
  } else if (f.backend != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend '", f.backend, "': expected auto, cpu or cuda"));
  }

  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(v1::NormalizeResponse resp, client->Normalize(req));
  const double round_trip_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  RETURN_IF_ERROR(SaveTensor(f.output, resp.output(), f.raw_bf16));
  if (!f.residual_out.empty()) {
    if (!resp.has_residual_out()) return absl::InvalidArgumentError("--residual_out needs --residual");
    RETURN_IF_ERROR(SaveTensor(f.residual_out, resp.residual_out(), f.raw_bf16));
  }
  if (!f.stats_out.empty()) {
    if (resp.has_mean()) RETURN_IF_ERROR(SaveTensor(f.stats_out + "_mean.npy", resp.mean(), false));
    if (resp.has_rstd()) RETURN_IF_ERROR(SaveTensor(f.stats_out + "_rstd.npy", resp.rstd(), false));
    if (resp.has_variance())
      RETURN_IF_ERROR(SaveTensor(f.stats_out + "_variance.npy", resp.variance(), false));
  }
  const v1::ServerTiming& t = resp.timing();
  std::printf(
      "%s %s %s -> %s on %s: server queue %.1f us, compute %.1f us, total %.1f us "
      "(batch of %u requests, %llu rows); round trip %.3f ms\n",
      WireKindName(req.kind()).c_str(), WireDTypeName(req.input().dtype()).c_str(),
      ShapeString(req.input().shape()).c_str(), f.output.c_str(), resp.backend().c_str(), t.queue_ns() / 1e3,
      t.compute_ns() / 1e3, t.total_ns() / 1e3, t.batch_requests(),
      static_cast<unsigned long long>(t.batch_rows()), round_trip_ms);
  return absl::OkStatus();
}

absl::Status RunInfo(Client* client) {
  ASSIGN_OR_RETURN(v1::GetServerInfoResponse info, client->GetServerInfo());
  std::printf("version          %s\n", info.version().c_str());
  if (!info.git_commit().empty()) std::printf("git commit       %s\n", info.git_commit().c_str());
  std::printf("default backend  %s\n", info.default_backend().c_str());
  for (const auto& b : info.backends()) {
    std::printf("backend          %-5s %s%s\n", b.name().c_str(), b.device().c_str(),
                b.available() ? "" : " (unavailable)");
  }
  std::vector<std::string> kinds, dtypes;
  for (int k : info.kinds()) kinds.push_back(WireKindName(static_cast<v1::NormKind>(k)));
  for (int d : info.dtypes()) dtypes.push_back(WireDTypeName(static_cast<v1::DType>(d)));
  std::printf("kinds            %s\n", absl::StrJoin(kinds, ", ").c_str());
  std::printf("dtypes           %s\n", absl::StrJoin(dtypes, ", ").c_str());
  const v1::ServerLimits& l = info.limits();
  std::printf("limits           max message %lld bytes, max tensor %lld elements, max rank %d\n",
              static_cast<long long>(l.max_message_bytes()), static_cast<long long>(l.max_tensor_elements()),
              l.max_rank());
  std::printf("batching         max %lld rows per call, max queue delay %lld us\n",
              static_cast<long long>(l.max_batch_rows()), static_cast<long long>(l.max_queue_delay_us()));
  std::printf("queue            max %lld requests, max %lld bytes\n",
              static_cast<long long>(l.max_queue_requests()), static_cast<long long>(l.max_queue_bytes()));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  ClientOptions options;
  std::string token_file;
  bool help = false;
  FlagSet flags;
  AddClientFlags(&flags, &options, &token_file);
  flags.AddBool("help", &help, "print the flags and exit");
  NormalizeFlags nf;
  if (command == "normalize") {
    flags.AddString("kind", &nf.kind, "layer_norm, rms_norm, batch_norm, group_norm or instance_norm");
    flags.AddString("input", &nf.input, "input .npy ('<f4', '<f2' or '<u2' bfloat16 bits)");
    flags.AddString("gamma", &nf.gamma, "scale .npy");
    flags.AddString("beta", &nf.beta, "shift .npy");
    flags.AddString("residual", &nf.residual, "residual .npy, added to the input before normalizing");
    flags.AddString("running_mean", &nf.running_mean, "batch_norm running mean .npy");
    flags.AddString("running_var", &nf.running_var, "batch_norm running variance .npy");
    flags.AddString("dtype", &nf.dtype, "wire dtype of input and residual (default: the file's)");
    flags.AddString("output_dtype", &nf.output_dtype, "output dtype (default: the input's)");
    flags.AddString("output", &nf.output, "output .npy");
    flags.AddString("residual_out", &nf.residual_out, "where to write input + residual");
    flags.AddString("stats_out", &nf.stats_out,
                    "write PREFIX_mean.npy, PREFIX_rstd.npy (PREFIX_variance.npy)");
    flags.AddBool("raw_bf16", &nf.raw_bf16, "write bfloat16 results as '<u2' bits instead of '<f4'");
    flags.AddDouble("eps", &nf.eps, "epsilon (default: the kind's, 1e-5 or 1e-6 for rms_norm)");
    flags.AddInt("normalized_dims", &nf.normalized_dims, "trailing dims normalized together");
    flags.AddInt("num_groups", &nf.num_groups, "group_norm groups");
    flags.AddBool("use_batch_stats", &nf.use_batch_stats, "batch_norm with the batch's own statistics");
    flags.AddBool("unit_offset", &nf.unit_offset, "scale by 1 + gamma");
    flags.AddBool("return_stats", &nf.return_stats, "ask for mean and rstd");
    flags.AddString("backend", &nf.backend, "auto, cpu or cuda");
  } else if (command != "info" && command != "health") {
    std::fprintf(stderr, "unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  }
  auto positional = flags.Parse(argc, argv, 2);
  if (!positional.ok()) {
    std::fprintf(stderr, "%s\n", std::string(positional.status().message()).c_str());
    return 2;
  }
  if (help) {
    std::printf("normserve-cli %s flags:\n%s", command.c_str(), flags.Usage().c_str());
    return 0;
  }
  if (!positional->empty()) {
    std::fprintf(stderr, "unexpected argument '%s'\n", (*positional)[0].c_str());
    return 2;
  }
  if (absl::Status s = LoadTokenFile(token_file, &options.bearer_token); !s.ok()) return Fail(s);
  auto client = Client::Create(options);
  if (!client.ok()) return Fail(client.status());
  if (command == "health") {
    auto state = (*client)->CheckHealth();
    if (!state.ok()) return Fail(state.status());
    std::printf("%s\n", HealthStateName(*state));
    return *state == HealthState::kServing ? 0 : 1;
  }
  absl::Status s = command == "info" ? RunInfo(client->get()) : RunNormalize(client->get(), nf);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace
}  // namespace normserve::client

int main(int argc, char** argv) { return normserve::client::Main(argc, argv); }
