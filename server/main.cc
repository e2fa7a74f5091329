// normserve: the tensor normalization server.
//
// Prints one line to stdout once it serves, which scripts and tests parse:
//   normserve listening on HOST:PORT metrics on HOST:MPORT backend NAME
// (`metrics off` in place of `metrics on HOST:MPORT` with --metrics_port=-1).
// SIGTERM / SIGINT start a graceful shutdown bounded by --shutdown_grace_s.
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "normserve/kernels/cpu_backend.h"
#include "normserve/kernels/cuda_backend.h"
#include "server/core/metrics.h"
#include "server/core/norm_core.h"
#include "server/grpc/auth.h"
#include "server/grpc/server.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on for gRPC.");
ABSL_FLAG(int, port, 50051, "gRPC port; 0 picks a free port (printed on start).");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus /metrics port; 0 picks a free port, -1 disables metrics.");
ABSL_FLAG(std::string, backend, "auto",
          "Default backend: auto (CUDA when a GPU is present, else CPU), cpu or cuda.");
ABSL_FLAG(int, cpu_threads, 0, "CPU backend threads; 0 uses every core available.");
ABSL_FLAG(std::string, devices, "", "Comma-separated CUDA device ordinals; empty means device 0.");
ABSL_FLAG(int, max_message_mb, 64, "Largest gRPC message received or sent, MiB.");
ABSL_FLAG(int64_t, max_tensor_elements, int64_t{1} << 28, "Largest number of elements in one tensor.");
ABSL_FLAG(int64_t, max_batch_rows, 4096, "Most normalized groups (rows) merged into one backend call.");
ABSL_FLAG(int64_t, max_queue_delay_us, 100,
          "How long a request may wait for compatible company, microseconds. 0: no waiting (requests "
          "already queued together still merge); use --enable_batching=false for one request per call.");
ABSL_FLAG(int64_t, max_queue_requests, 1024, "Most requests queued per backend; more get UNAVAILABLE.");
ABSL_FLAG(int64_t, max_queue_bytes, int64_t{1} << 30,
          "Most input bytes queued per backend; more get UNAVAILABLE.");
ABSL_FLAG(bool, enable_batching, true, "Merge compatible requests into one backend call.");
ABSL_FLAG(int, batch_workers, 2, "Threads per backend that run batches and complete calls.");
ABSL_FLAG(int, max_stream_inflight, 64, "Requests of one NormalizeStream read ahead and not yet answered.");
ABSL_FLAG(bool, enable_reflection, false, "Serve gRPC server reflection.");
ABSL_FLAG(double, shutdown_grace_s, 10, "On SIGTERM/SIGINT, how long queued and running requests may take.");
ABSL_FLAG(int, max_concurrent_streams, 256,
          "Concurrent calls per client connection; 0 keeps gRPC's default.");
ABSL_FLAG(int64_t, resource_quota_mb, 2048,
          "Memory the gRPC transport may use for buffers, MiB; 0 = unlimited.");
ABSL_FLAG(int, keepalive_time_s, 60, "Ping idle client connections this often, seconds.");
ABSL_FLAG(int, keepalive_timeout_s, 20,
          "Close a connection whose keepalive ping is unanswered this long, seconds.");
ABSL_FLAG(double, shutdown_drain_s, 0.5,
          "On SIGTERM/SIGINT, how long to keep serving after health turns NOT_SERVING so that clients move "
          "away first (at most a quarter of --shutdown_grace_s).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key turns on TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA bundle; requires and verifies client certificates (mTLS).");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding a bearer token; NormService calls then need 'authorization: Bearer <token>'.");

namespace normserve::server {
namespace {

int Fail(const std::string& message) {
  std::cerr << "normserve: " << message << std::endl;
  return 1;
}

// The address to print: a wildcard bind is reachable on loopback.
std::string PrintableHost(const std::string& host) {
  if (host == "0.0.0.0" || host.empty()) return "127.0.0.1";
  if (host == "::" || host == "[::]") return "[::1]";
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]");
  return host;
}

// Self-pipe: the handler only writes the signal number, which is
// async-signal-safe; the main thread reads it. (Blocking the signals and
// sigwait() would not do: gRPC starts threads during static initialization,
// before main could set a mask for them to inherit.)
int signal_pipe[2] = {-1, -1};

void OnSignal(int signal_number) {
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &byte, 1);
}

bool InstallSignalHandlers() {
  if (pipe(signal_pipe) != 0) return false;
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  return sigaction(SIGTERM, &action, nullptr) == 0 && sigaction(SIGINT, &action, nullptr) == 0;
}

int WaitForSignal() {
  unsigned char byte = 0;
  while (read(signal_pipe[0], &byte, 1) != 1) {
    if (errno != EINTR) return 0;
  }
  return byte;
}

int Run() {
  if (!InstallSignalHandlers()) return Fail("cannot install SIGTERM/SIGINT handlers");

  const std::string backend_flag = absl::GetFlag(FLAGS_backend);
  if (backend_flag != "auto" && backend_flag != "cpu" && backend_flag != "cuda") {
    return Fail(absl::StrCat("--backend=", backend_flag, " is not one of auto, cpu, cuda"));
  }
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  kernels::CpuBackendOptions cpu_options;
  cpu_options.threads = absl::GetFlag(FLAGS_cpu_threads);
  backends.push_back(std::make_unique<kernels::CpuBackend>(cpu_options));
  std::string default_backend = "cpu";
  if (backend_flag != "cpu") {
    const int gpus = kernels::CudaDeviceCount();
    if (gpus > 0) {
      kernels::CudaBackendOptions cuda_options;
      for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_devices), ',', absl::SkipEmpty())) {
        int device = 0;
        if (!absl::SimpleAtoi(part, &device) || device < 0 || device >= gpus) {
          return Fail(absl::StrCat("--devices: '", part, "' is not a device ordinal in [0, ", gpus, ")"));
        }
        cuda_options.devices.push_back(device);
      }
      std::unique_ptr<kernels::Backend> cuda;
      kernels::KernelStatus status = kernels::CreateCudaBackend(cuda_options, &cuda);
      if (!status.ok()) return Fail(absl::StrCat("cannot start the CUDA backend: ", status.message()));
      backends.push_back(std::move(cuda));
      default_backend = "cuda";
    } else if (backend_flag == "cuda") {
      return Fail(kernels::CudaCompiledIn()
                      ? "--backend=cuda but no CUDA device is visible (CudaDeviceCount() = 0)"
                      : "--backend=cuda but this normserve was built without CUDA");
    }
  }
  std::cerr << "normserve: backend " << default_backend << " (--backend=" << backend_flag << ")";
  for (const auto& b : backends) std::cerr << "; " << b->name() << ": " << b->device_description();
  std::cerr << std::endl;

  std::unique_ptr<Metrics> metrics;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    MetricsOptions metrics_options;
    metrics_options.host = absl::GetFlag(FLAGS_host);
    metrics_options.port = absl::GetFlag(FLAGS_metrics_port);
    metrics_options.version = NORMSERVE_VERSION;
    metrics_options.git_commit = NORMSERVE_GIT_COMMIT;
    absl::StatusOr<std::unique_ptr<Metrics>> created = Metrics::Create(metrics_options);
    if (!created.ok()) return Fail(std::string(created.status().message()));
    metrics = *std::move(created);
  }

  CoreOptions core_options;
  core_options.version = NORMSERVE_VERSION;
  core_options.git_commit = NORMSERVE_GIT_COMMIT;
  core_options.max_message_bytes = int64_t{absl::GetFlag(FLAGS_max_message_mb)} << 20;
  core_options.max_tensor_elements = absl::GetFlag(FLAGS_max_tensor_elements);
  core_options.batcher.max_batch_rows = absl::GetFlag(FLAGS_max_batch_rows);
  core_options.batcher.max_queue_delay = std::chrono::microseconds(absl::GetFlag(FLAGS_max_queue_delay_us));
  core_options.batcher.max_queue_requests = absl::GetFlag(FLAGS_max_queue_requests);
  core_options.batcher.max_queue_bytes = absl::GetFlag(FLAGS_max_queue_bytes);
  core_options.batcher.enable_batching = absl::GetFlag(FLAGS_enable_batching);
  core_options.batcher.workers = absl::GetFlag(FLAGS_batch_workers);
  if (core_options.max_message_bytes <= 0 || core_options.max_tensor_elements <= 0 ||
      core_options.batcher.max_batch_rows <= 0 || core_options.batcher.max_queue_delay.count() < 0 ||
      core_options.batcher.max_queue_requests <= 0 || core_options.batcher.max_queue_bytes <= 0 ||
      core_options.batcher.workers <= 0) {
    return Fail(
        "--max_message_mb, --max_tensor_elements, --max_batch_rows, --max_queue_requests, "
        "--max_queue_bytes and --batch_workers must be > 0, --max_queue_delay_us >= 0");
  }
  NormCore core(core_options, std::move(backends), default_backend, metrics.get());

  ServerOptions server_options;
  server_options.host = absl::GetFlag(FLAGS_host);
  server_options.port = absl::GetFlag(FLAGS_port);
  server_options.max_message_bytes = core_options.max_message_bytes;
  server_options.enable_reflection = absl::GetFlag(FLAGS_enable_reflection);
  server_options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  server_options.tls_key = absl::GetFlag(FLAGS_tls_key);
  server_options.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  server_options.service.max_stream_inflight = absl::GetFlag(FLAGS_max_stream_inflight);
  server_options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  server_options.resource_quota_bytes = absl::GetFlag(FLAGS_resource_quota_mb) << 20;
  server_options.keepalive_time = std::chrono::seconds(absl::GetFlag(FLAGS_keepalive_time_s));
  server_options.keepalive_timeout = std::chrono::seconds(absl::GetFlag(FLAGS_keepalive_timeout_s));
  server_options.shutdown_drain =
      std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_shutdown_drain_s) * 1000));
  if (const std::string token_file = absl::GetFlag(FLAGS_auth_token_file); !token_file.empty()) {
    absl::StatusOr<BearerTokenAuth> auth = BearerTokenAuth::FromFile(token_file);
    if (!auth.ok()) return Fail(std::string(auth.status().message()));
    server_options.service.auth = *std::move(auth);
  }
  absl::StatusOr<std::unique_ptr<NormServer>> server = NormServer::Start(server_options, &core);
  if (!server.ok()) return Fail(std::string(server.status().message()));

  const std::string host = PrintableHost(server_options.host);
  const std::string metrics_part =
      metrics ? absl::StrCat("metrics on ", host, ":", metrics->port()) : std::string("metrics off");
  std::cout << "normserve listening on " << host << ":" << (*server)->port() << " " << metrics_part
            << " backend " << default_backend << std::endl;

  const int signal_number = WaitForSignal();
  const double grace_s = absl::GetFlag(FLAGS_shutdown_grace_s);
  std::cerr << "normserve: signal " << signal_number << ", shutting down (grace " << grace_s << " s)"
            << std::endl;
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
  // A watchdog bounds the exit even if a backend call hangs.
  std::thread([grace] {
    std::this_thread::sleep_for(grace + std::chrono::seconds(5));
    std::cerr << "normserve: shutdown took too long; exiting" << std::endl;
    _exit(1);
  }).detach();
  (*server)->Shutdown(grace);
  server->reset();
  core.Shutdown();
  std::cerr << "normserve: stopped" << std::endl;
  return 0;
}

}  // namespace
}  // namespace normserve::server

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("normserve: tensor normalization over gRPC. Flags: --helpfull.");
  absl::ParseCommandLine(argc, argv);
  return normserve::server::Run();
}
