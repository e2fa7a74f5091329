// Reads a bearer token from a file, trimming surrounding whitespace. Private
// to client/.
#ifndef NORMSERVE_CLIENT_SRC_TOKEN_FILE_H_
#define NORMSERVE_CLIENT_SRC_TOKEN_FILE_H_

#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace normserve::client {

inline absl::Status LoadTokenFile(const std::string& path, std::string* token) {
  if (path.empty()) return absl::OkStatus();
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read token file '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  *token = std::string(absl::StripAsciiWhitespace(buf.str()));
  return absl::OkStatus();
}

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_SRC_TOKEN_FILE_H_
