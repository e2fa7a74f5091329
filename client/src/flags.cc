#include "normserve/client/flags.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace normserve::client {

void FlagSet::Add(std::string name, Flag flag) { flags_[std::move(name)] = std::move(flag); }

void FlagSet::AddString(std::string name, std::string* out, std::string help) {
  Add(name, {false, std::move(help), *out, [out](absl::string_view v) {
               *out = std::string(v);
               return absl::OkStatus();
             }});
}

void FlagSet::AddInt(std::string name, int64_t* out, std::string help) {
  Add(name, {false, std::move(help), absl::StrCat(*out), [out, name](absl::string_view v) {
               if (!absl::SimpleAtoi(v, out)) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("flag --", name, " expects an integer, got '", v, "'"));
               }
               return absl::OkStatus();
             }});
}

void FlagSet::AddInt(std::string name, int* out, std::string help) {
  Add(name, {false, std::move(help), absl::StrCat(*out), [out, name](absl::string_view v) {
               if (!absl::SimpleAtoi(v, out)) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("flag --", name, " expects an integer, got '", v, "'"));
               }
               return absl::OkStatus();
             }});
}

void FlagSet::AddDouble(std::string name, double* out, std::string help) {
  Add(name, {false, std::move(help), absl::StrCat(*out), [out, name](absl::string_view v) {
               if (!absl::SimpleAtod(v, out)) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("flag --", name, " expects a number, got '", v, "'"));
               }
               return absl::OkStatus();
             }});
}

void FlagSet::AddBool(std::string name, bool* out, std::string help) {
  Add(name, {true, std::move(help), *out ? "true" : "false", [out, name](absl::string_view v) {
               if (!absl::SimpleAtob(v, out)) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("flag --", name, " expects true or false, got '", v, "'"));
               }
               return absl::OkStatus();
             }});
}

void FlagSet::AddDuration(std::string name, absl::Duration* out, std::string help) {
  Add(name, {false, std::move(help), absl::FormatDuration(*out), [out, name](absl::string_view v) {
               if (!absl::ParseDuration(v, out) || *out < absl::ZeroDuration()) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("flag --", name, " expects a duration like 10s or 250ms, got '", v, "'"));
               }
               return absl::OkStatus();
             }});
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(int argc, char** argv, int first) {
  std::vector<std::string> args;
  for (int i = first; i < argc; ++i) args.emplace_back(argv[i]);
  return Parse(args);
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    auto it = flags_.find(name);
    if (it == flags_.end()) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (it->second.is_bool) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    if (absl::Status s = it->second.set(value); !s.ok()) return s;
    set_.insert(name);
  }
  return positional;
}

std::string FlagSet::Usage() const {
  std::string out;
  for (const auto& [name, flag] : flags_) {
    absl::StrAppendFormat(&out, "  --%-20s %s", name, flag.help);
    if (!flag.default_value.empty()) absl::StrAppend(&out, " (default: ", flag.default_value, ")");
    out.push_back('\n');
  }
  return out;
}

}  // namespace normserve::client
