// Connection flags shared by normserve-cli and normserve-loadgen. Private to
// client/.
#ifndef NORMSERVE_CLIENT_SRC_CLIENT_FLAGS_H_
#define NORMSERVE_CLIENT_SRC_CLIENT_FLAGS_H_

#include "normserve/client/client.h"
#include "normserve/client/flags.h"

namespace normserve::client {

// Registers --target, --tls, --tls_ca, --tls_cert, --tls_key,
// --tls_server_name, --token, --token_file, --deadline, --max_message_bytes,
// --lb and --retries, writing into `o` (and `token_file`).
inline void AddClientFlags(FlagSet* flags, ClientOptions* o, std::string* token_file) {
  flags->AddString("target", &o->target, "gRPC target: host:port, dns:///name:port or ipv4:a:p1,b:p2");
  flags->AddBool("tls", &o->use_tls, "use TLS, verifying the server with the system roots or --tls_ca");
  flags->AddString("tls_ca", &o->tls_root_ca_file,
                   "PEM root CA for the server's certificate (implies --tls)");
  flags->AddString("tls_cert", &o->tls_cert_file, "PEM client certificate for mutual TLS");
  flags->AddString("tls_key", &o->tls_key_file, "PEM client private key for mutual TLS");
  flags->AddString("tls_server_name", &o->tls_server_name, "name to verify the server certificate against");
  flags->AddString("token", &o->bearer_token, "bearer token sent as 'authorization: Bearer <token>'");
  flags->AddString("token_file", token_file, "file holding the bearer token (keeps it out of ps)");
  flags->AddDuration("deadline", &o->default_deadline, "deadline of each call");
  flags->AddInt("max_message_bytes", &o->max_message_bytes, "largest message sent or received");
  flags->AddString("lb", &o->load_balancing_policy, "load balancing: round_robin or pick_first");
  flags->AddInt("retries", &o->retry_max_attempts, "attempts per call on UNAVAILABLE (1: no retries)");
}

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_SRC_CLIENT_FLAGS_H_
