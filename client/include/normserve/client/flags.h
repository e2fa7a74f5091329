// FlagSet: the small command-line parser of normserve-cli and
// normserve-loadgen.
//
// Flags are "--name=value" or "--name value"; a bool flag also takes the bare
// form "--name". Each flag writes into a variable the caller owns and that
// keeps its default when the flag is absent. Anything that does not start
// with "--" is a positional argument; "--" ends the flags. Unknown flags and
// bad values are INVALID_ARGUMENT with a message naming the flag. Not
// thread-safe; build and parse on one thread.
#ifndef NORMSERVE_CLIENT_FLAGS_H_
#define NORMSERVE_CLIENT_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace normserve::client {

class FlagSet {
 public:
  void AddString(std::string name, std::string* out, std::string help);
  void AddInt(std::string name, int64_t* out, std::string help);
  void AddInt(std::string name, int* out, std::string help);
  void AddDouble(std::string name, double* out, std::string help);
  void AddBool(std::string name, bool* out, std::string help);
  // Values like "10s", "250ms", "1.5m" (absl::ParseDuration).
  void AddDuration(std::string name, absl::Duration* out, std::string help);

  // Parses args (no program name). Returns the positional arguments.
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args);
  absl::StatusOr<std::vector<std::string>> Parse(int argc, char** argv, int first = 1);

  // Whether the flag appeared on the command line.
  bool IsSet(absl::string_view name) const { return set_.count(std::string(name)) > 0; }

  // One line per flag: "  --name  help (default: value)".
  std::string Usage() const;

 private:
  struct Flag {
    bool is_bool = false;
    std::string help;
    std::string default_value;
    std::function<absl::Status(absl::string_view)> set;
  };
  void Add(std::string name, Flag flag);

  std::map<std::string, Flag> flags_;
  std::set<std::string> set_;
};

}  // namespace normserve::client

#endif  // NORMSERVE_CLIENT_FLAGS_H_
