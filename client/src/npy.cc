#include "normserve/client/npy.h"

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace normserve::client {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed header: ", what));
}

// A reader for the one Python literal NumPy writes as the header:
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::Status Parse(std::string* descr, bool* fortran_order, std::vector<int64_t>* shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    SkipSpace();
    if (!Consume('{')) return Malformed("expected '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      std::string key;
      if (!ReadString(&key)) return Malformed("expected a quoted key");
      SkipSpace();
      if (!Consume(':')) return Malformed(absl::StrCat("expected ':' after '", key, "'"));
      SkipSpace();
      if (key == "descr") {
        if (!ReadString(descr)) return Malformed("descr is not a string");
        have_descr = true;
      } else if (key == "fortran_order") {
        if (ConsumeWord("True")) {
          *fortran_order = true;
        } else if (ConsumeWord("False")) {
          *fortran_order = false;
        } else {
          return Malformed("fortran_order is not True or False");
        }
        have_order = true;
      } else if (key == "shape") {
        if (!ReadShape(shape)) return Malformed("shape is not a tuple of non-negative integers");
        have_shape = true;
      } else {
        return Malformed(absl::StrCat("unexpected key '", key, "'"));
      }
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Malformed("expected ',' or '}'");
    }
    if (!have_descr) return Malformed("missing 'descr'");
    if (!have_order) return Malformed("missing 'fortran_order'");
    if (!have_shape) return Malformed("missing 'shape'");
    return absl::OkStatus();
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view w) {
    if (text_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  bool ReadString(std::string* out) {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return false;
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) return false;
    *out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool ReadShape(std::vector<int64_t>* shape) {
    shape->clear();
    if (!Consume('(')) return false;
    while (true) {
      SkipSpace();
      if (Consume(')')) return true;
      if (pos_ >= text_.size() || !std::isdigit(static_cast<unsigned char>(text_[pos_]))) return false;
      int64_t v = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
        if (v > (int64_t{1} << 50)) return false;
        v = v * 10 + (text_[pos_++] - '0');
      }
      // Python 2 era files may write "3L".
      Consume('L');
      shape->push_back(v);
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume(')')) return true;
      return false;
    }
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

std::string ShapeTuple(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

uint32_t ReadLE(absl::string_view b, size_t offset, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[offset + i]);
  return v;
}

}  // namespace

const char* NpyDescr(NpyDType t) {
  switch (t) {
    case NpyDType::kFloat32:
      return "<f4";
    case NpyDType::kFloat16:
      return "<f2";
    case NpyDType::kUInt16:
      return "<u2";
  }
  return "?";
}

int64_t NpyArray::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<NpyArray> ParseNpy(absl::string_view file) {
  if (file.size() < kMagicLen || std::memcmp(file.data(), kMagic, kMagicLen) != 0) {
    return absl::InvalidArgumentError("bad magic: not a .npy file");
  }
  if (file.size() < kMagicLen + 2) return absl::InvalidArgumentError("truncated header");
  const int major = static_cast<unsigned char>(file[6]);
  const int minor = static_cast<unsigned char>(file[7]);
  if (major < 1 || major > 3 || minor != 0) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported .npy format version ", major, ".", minor));
  }
  // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4 (3.0
  // only changes the header's text encoding to UTF-8).
  const int len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (file.size() < prefix) return absl::InvalidArgumentError("truncated header");
  const size_t header_len = ReadLE(file, kMagicLen + 2, len_bytes);
  if (file.size() < prefix + header_len) return absl::InvalidArgumentError("truncated header");
  const absl::string_view header = file.substr(prefix, header_len);

  std::string descr;
  bool fortran_order = false;
  NpyArray array;
  if (absl::Status s = HeaderParser(header).Parse(&descr, &fortran_order, &array.shape); !s.ok()) return s;
  if (descr == "<f4") {
    array.dtype = NpyDType::kFloat32;
  } else if (descr == "<f2") {
    array.dtype = NpyDType::kFloat16;
  } else if (descr == "<u2") {
    array.dtype = NpyDType::kUInt16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported dtype '", descr, "': expected '<f4', '<f2' or '<u2'"));
  }
  if (fortran_order) {
    return absl::InvalidArgumentError("fortran_order True is not supported: save a C-contiguous array");
  }
  const uint64_t need = static_cast<uint64_t>(array.NumElements()) * NpyItemSize(array.dtype);
  const absl::string_view data = file.substr(prefix + header_len);
  if (data.size() < need) {
    return absl::InvalidArgumentError(absl::StrCat("truncated data: shape ", ShapeTuple(array.shape), " '",
                                                   descr, "' needs ", need, " bytes, file has ",
                                                   data.size()));
  }
  array.data = std::string(data.substr(0, need));
  return array;
}

absl::StatusOr<NpyArray> ReadNpyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream buf;
  buf << in.rdbuf();
  auto array = ParseNpy(buf.str());
  if (!array.ok()) {
    return absl::Status(array.status().code(), absl::StrCat(path, ": ", array.status().message()));
  }
  return array;
}

std::string SerializeNpy(const NpyArray& array) {
  std::string dict = absl::StrCat("{'descr': '", NpyDescr(array.dtype),
                                  "', 'fortran_order': False, 'shape': ", ShapeTuple(array.shape), ", }");
  // Pad with spaces and end with '\n' so the data starts at a multiple of 64.
  auto padded = [&dict](size_t prefix) {
    std::string h = dict;
    const size_t total = prefix + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h.push_back('\n');
    return h;
  };
  std::string header = padded(kMagicLen + 2 + 2);
  const bool v2 = header.size() > 65535;
  if (v2) header = padded(kMagicLen + 2 + 4);
  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(v2 ? 2 : 1));
  out.push_back(0);
  const int len_bytes = v2 ? 4 : 2;
  for (int i = 0; i < len_bytes; ++i) out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  out += header;
  out += array.data;
  return out;
}

absl::Status WriteNpyFile(const std::string& path, const NpyArray& array) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot open for writing"));
  const std::string bytes = SerializeNpy(array);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace normserve::client
