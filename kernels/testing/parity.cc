#include "normserve/kernels/testing/parity.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>

#include "normserve/kernels/reference.h"

namespace normserve::kernels::testing {
namespace {

// Unwritten outputs keep this byte pattern: -2.9e-16 as FLOAT32 and
// BFLOAT16, -0.0223 as FLOAT16, so a backend that skips a value mismatches.
constexpr uint8_t kSentinelByte = 0xA5;

// Failures reported per output before the rest are only counted.
constexpr int kMaxMessagesPerOutput = 6;

// A small deterministic generator (splitmix64): the standard distributions
// differ between standard libraries, this does not.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Unit(); }
  // Uniform in [0, n).
  int64_t Below(int64_t n) { return static_cast<int64_t>(Next() % static_cast<uint64_t>(n)); }
  bool Coin() { return (Next() & 1) != 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(Below(static_cast<int64_t>(v.size())))];
  }

 private:
  uint64_t state_;
};

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

bool IsRowKind(NormKind k) { return k == NormKind::kLayerNorm || k == NormKind::kRmsNorm; }

uint16_t Bits16(const std::vector<uint8_t>& bytes, int64_t i) {
  uint16_t v;
  std::memcpy(&v, bytes.data() + 2 * i, 2);
  return v;
}

// Collects messages for one output, keeping the first few.
class FailureLog {
 public:
  FailureLog(std::vector<std::string>* out, std::string prefix) : out_(out), prefix_(std::move(prefix)) {}
  ~FailureLog() {
    if (count_ > kMaxMessagesPerOutput) {
      out_->push_back(prefix_ + ": " + std::to_string(count_ - kMaxMessagesPerOutput) + " more mismatches");
    }
  }
  void Add(const std::string& m) {
    if (++count_ <= kMaxMessagesPerOutput) out_->push_back(prefix_ + m);
  }

 private:
  std::vector<std::string>* out_;
  std::string prefix_;
  int count_ = 0;
};

// FLOAT32 bound, NaN and Inf exact. Returns an empty string when within bounds.
std::string CheckFloat32(float got, float want) {
  if (std::isnan(want) || std::isnan(got)) {
    if (std::isnan(want) && std::isnan(got)) return {};
  } else if (std::isinf(want) || std::isinf(got)) {
    if (got == want) return {};
  } else {
    const double err = std::fabs(static_cast<double>(got) - static_cast<double>(want));
    const double bound = 1e-5 * std::max(1.0, std::fabs(static_cast<double>(want)));
    if (err <= bound) return {};
    return "got " + Num(got) + " want " + Num(want) + " (error " + Num(err) + " > bound " + Num(bound) + ")";
  }
  return "got " + Num(got) + " want " + Num(want);
}

// FLOAT16 / BFLOAT16: within 1 ulp of the reference, or, where the output
// is the small difference of larger terms, within the FLOAT32 bound on those
// terms: |got - want| <= 1e-5 * (|xhat * scale| + |shift|) = `floor`. A
// float32 kernel cannot do better there (docs/SEMANTICS.md, Decisions).
std::string CheckHalf(uint16_t got, uint16_t want, DType t, double floor) {
  const float g = t == DType::kFloat16 ? HalfBitsToFloat(got) : BFloat16BitsToFloat(got);
  const float w = t == DType::kFloat16 ? HalfBitsToFloat(want) : BFloat16BitsToFloat(want);
  char hex[48];
  std::snprintf(hex, sizeof(hex), " (0x%04x vs 0x%04x)", got, want);
  if (std::isnan(g) || std::isnan(w)) {
    if (std::isnan(g) && std::isnan(w)) return {};
    return "got " + Num(g) + " want " + Num(w) + hex;
  }
  if (std::isinf(g) || std::isinf(w)) {
    if (g == w) return {};
    return "got " + Num(g) + " want " + Num(w) + hex;
  }
  const int64_t ulps = HalfUlpDistance(got, want);
  if (ulps <= 1) return {};
  const double err = std::fabs(static_cast<double>(g) - static_cast<double>(w));
  if (err <= floor) return {};
  return "got " + Num(g) + " want " + Num(w) + hex + ", " + std::to_string(ulps) + " ulp apart (error " +
         Num(err) + " > float32 floor " + Num(floor) + ")";
}

// |xhat * scale| + |shift| of every output element, from two FLOAT32
// reference runs (with and without beta).
std::vector<double> TermMagnitudes(const ProblemCase& c) {
  ProblemCase with_shift = c;
  with_shift.output_dtype = DType::kFloat32;
  with_shift.output.clear();
  ReferenceNormalize(with_shift.Problem());
  ProblemCase without_shift = with_shift;
  without_shift.beta = OwnedTensor();
  without_shift.output.clear();
  ReferenceNormalize(without_shift.Problem());
  std::vector<double> magnitude(static_cast<size_t>(c.input.NumElements()));
  for (size_t i = 0; i < magnitude.size(); ++i) {
    const double y = LoadAsFloat(with_shift.output.data(), DType::kFloat32, static_cast<int64_t>(i));
    const double a = LoadAsFloat(without_shift.output.data(), DType::kFloat32, static_cast<int64_t>(i));
    magnitude[i] = std::fabs(a) + std::fabs(y - a);
  }
  return magnitude;
}

void CompareValues(const ProblemCase& c, const std::vector<uint8_t>& want, FailureLog& log) {
  const DType t = c.output_dtype;
  const int64_t count = c.input.NumElements();
  if (t == DType::kFloat32) {
    for (int64_t i = 0; i < count; ++i) {
      const std::string m = CheckFloat32(LoadAsFloat(c.output.data(), t, i), LoadAsFloat(want.data(), t, i));
      if (!m.empty()) log.Add("[" + std::to_string(i) + "] " + m);
    }
    return;
  }
  // The float32 floor needs two more reference runs; only pay for them when
  // some value is more than 1 ulp off.
  std::vector<double> magnitude;
  for (int64_t i = 0; i < count; ++i) {
    if (CheckHalf(Bits16(c.output, i), Bits16(want, i), t, 0.0).empty()) continue;
    if (magnitude.empty()) magnitude = TermMagnitudes(c);
    const std::string m =
        CheckHalf(Bits16(c.output, i), Bits16(want, i), t, 1e-5 * magnitude[static_cast<size_t>(i)]);
    if (!m.empty()) log.Add("[" + std::to_string(i) + "] " + m);
  }
}

void CompareStats(const std::vector<float>& got, const std::vector<float>& want, FailureLog& log) {
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string m = CheckFloat32(got[i], want[i]);
    if (!m.empty()) log.Add("[" + std::to_string(i) + "] " + m);
  }
}

// Bit-for-bit comparison of one element range of two byte buffers.
void CompareBits(const uint8_t* got, const uint8_t* want, int64_t count, size_t elem_size, FailureLog& log) {
  for (int64_t i = 0; i < count; ++i) {
    if (std::memcmp(got + i * elem_size, want + i * elem_size, elem_size) != 0) {
      log.Add("[" + std::to_string(i) + "] bits differ");
    }
  }
}

void FillRandom(OwnedTensor& t, Random& rng, double lo, double hi) {
  for (int64_t i = 0; i < t.NumElements(); ++i) t.Set(i, static_cast<float>(rng.Uniform(lo, hi)));
}

// Input-like values: each innermost row gets its own offset and spread.
void FillRows(OwnedTensor& t, Random& rng) {
  const int64_t inner = t.shape.empty() ? 1 : t.shape.back();
  double offset = 0;
  double spread = 1;
  for (int64_t i = 0; i < t.NumElements(); ++i) {
    if (i % inner == 0) {
      offset = rng.Uniform(-3, 3);
      spread = rng.Uniform(0.1, 4);
    }
    t.Set(i, static_cast<float>(offset + spread * rng.Uniform(-1, 1)));
  }
}

// Shapes of gamma / beta for a spec.
std::vector<int64_t> ParamShape(const CaseSpec& spec) {
  const std::vector<int64_t>& s = spec.shape;
  if (!IsRowKind(spec.kind)) return {s[1]};
  const size_t lead = s.size() - static_cast<size_t>(spec.normalized_dims);
  switch (spec.params) {
    case ParamMode::kAdaptivePerPosition:
      return s;
    case ParamMode::kAdaptivePerSample: {
      std::vector<int64_t> shape = s;
      for (size_t i = 1; i < lead; ++i) shape[i] = 1;
      return shape;
    }
    default:
      return std::vector<int64_t>(s.begin() + static_cast<std::ptrdiff_t>(lead), s.end());
  }
}

}  // namespace

OwnedTensor OwnedTensor::Zeros(DType dtype, std::vector<int64_t> shape) {
  OwnedTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.present = true;
  t.bytes.assign(static_cast<size_t>(t.NumElements()) * DTypeSize(dtype), 0);
  return t;
}

int64_t OwnedTensor::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorView OwnedTensor::View() const {
  TensorView v;
  if (!present) return v;
  v.dtype = dtype;
  v.shape = shape;
  // A present tensor with no bytes still needs a non-null pointer.
  static const uint8_t kEmpty = 0;
  v.data = bytes.empty() ? &kEmpty : bytes.data();
  v.byte_size = bytes.size();
  return v;
}

NormProblem ProblemCase::Problem() {
  NormProblem p;
  p.kind = kind;
  p.input = input.View();
  p.gamma = gamma.View();
  p.beta = beta.View();
  p.residual = residual.View();
  p.running_mean = running_mean.View();
  p.running_var = running_var.View();
  p.epsilon = epsilon;
  p.normalized_dims = normalized_dims;
  p.num_groups = num_groups;
  p.use_batch_stats = use_batch_stats;
  p.unit_offset = unit_offset;
  p.output_dtype = output_dtype;
  if (!ValidateProblem(p).ok()) return p;

  const int64_t elements = p.input.NumElements();
  const size_t groups = static_cast<size_t>(NumStatGroups(p));
  const bool batch_stats = kind == NormKind::kBatchNorm && use_batch_stats;
  const size_t out_bytes = static_cast<size_t>(elements) * DTypeSize(output_dtype);
  const size_t res_bytes = residual.present ? static_cast<size_t>(elements) * DTypeSize(input.dtype) : 0;
  const size_t mean_size = (return_stats || batch_stats) ? groups : 0;
  const size_t rstd_size = return_stats ? groups : 0;
  const size_t var_size = batch_stats ? groups : 0;
  if (output.size() != out_bytes || residual_out.size() != res_bytes || mean.size() != mean_size ||
      rstd.size() != rstd_size || variance.size() != var_size) {
    output.resize(out_bytes);
    residual_out.resize(res_bytes);
    mean.resize(mean_size);
    rstd.resize(rstd_size);
    variance.resize(var_size);
    ResetOutputs();
  }
  p.out.output = output.data();
  p.out.residual_out = residual.present ? residual_out.data() : nullptr;
  p.out.mean = mean.empty() ? nullptr : mean.data();
  p.out.rstd = rstd.empty() ? nullptr : rstd.data();
  p.out.variance = variance.empty() ? nullptr : variance.data();
  return p;
}

void ProblemCase::ResetOutputs() {
  std::fill(output.begin(), output.end(), kSentinelByte);
  std::fill(residual_out.begin(), residual_out.end(), kSentinelByte);
  for (std::vector<float>* v : {&mean, &rstd, &variance}) {
    if (!v->empty()) std::memset(v->data(), kSentinelByte, v->size() * sizeof(float));
  }
}

std::string_view ParamModeName(ParamMode m) {
  switch (m) {
    case ParamMode::kNone:
      return "none";
    case ParamMode::kGammaOnly:
      return "gamma";
    case ParamMode::kBetaOnly:
      return "beta";
    case ParamMode::kAffine:
      return "affine";
    case ParamMode::kAdaptivePerSample:
      return "adaptive_per_sample";
    case ParamMode::kAdaptivePerPosition:
      return "adaptive_per_position";
  }
  return "unknown";
}

std::string DescribeSpec(const CaseSpec& spec) {
  std::string s = std::string(NormKindName(spec.kind)) + " " + DTypeWireName(spec.dtype) + " " +
                  ShapeString(spec.shape) + " params=" + std::string(ParamModeName(spec.params)) + "/" +
                  DTypeWireName(spec.param_dtype);
  if (IsRowKind(spec.kind)) s += " k=" + std::to_string(spec.normalized_dims);
  if (spec.kind == NormKind::kGroupNorm) s += " G=" + std::to_string(spec.num_groups);
  if (spec.kind == NormKind::kBatchNorm) s += spec.use_batch_stats ? " batch_stats" : " running_stats";
  if (spec.unit_offset) s += " unit_offset";
  if (spec.residual) s += " residual";
  if (spec.return_stats) s += " stats";
  if (spec.output_dtype) s += std::string(" out=") + DTypeWireName(*spec.output_dtype);
  if (spec.epsilon) s += " eps=" + Num(*spec.epsilon);
  return s;
}

ProblemCase MakeRandomCase(const CaseSpec& spec, uint64_t seed) {
  Random rng(seed * 0x2545f4914f6cdd1dull + 0x1234567);
  ProblemCase c;
  c.name = DescribeSpec(spec) + " seed=" + std::to_string(seed);
  c.kind = spec.kind;
  c.epsilon = spec.epsilon.value_or(DefaultEpsilon(spec.kind));
  c.normalized_dims = spec.normalized_dims;
  c.num_groups = spec.num_groups;
  c.use_batch_stats = spec.use_batch_stats;
  c.unit_offset = spec.unit_offset;
  c.output_dtype = spec.output_dtype.value_or(spec.dtype);
  c.return_stats = spec.return_stats;

  c.input = OwnedTensor::Zeros(spec.dtype, spec.shape);
  FillRows(c.input, rng);
  if (spec.residual) {
    c.residual = OwnedTensor::Zeros(spec.dtype, spec.shape);
    FillRows(c.residual, rng);
  }
  const bool gamma = spec.params != ParamMode::kNone && spec.params != ParamMode::kBetaOnly;
  const bool beta = spec.params != ParamMode::kNone && spec.params != ParamMode::kGammaOnly;
  const std::vector<int64_t> param_shape = ParamShape(spec);
  if (gamma) {
    c.gamma = OwnedTensor::Zeros(spec.param_dtype, param_shape);
    // With unit_offset the scale is 1 + gamma, so gamma itself stays near 0.
    if (spec.unit_offset) {
      FillRandom(c.gamma, rng, -0.6, 0.6);
    } else {
      FillRandom(c.gamma, rng, -2.0, 2.0);
    }
  }
  if (beta) {
    c.beta = OwnedTensor::Zeros(spec.param_dtype, param_shape);
    FillRandom(c.beta, rng, -1.5, 1.5);
  }
  if (spec.kind == NormKind::kBatchNorm && !spec.use_batch_stats) {
    c.running_mean = OwnedTensor::Zeros(spec.param_dtype, {spec.shape[1]});
    c.running_var = OwnedTensor::Zeros(spec.param_dtype, {spec.shape[1]});
    FillRandom(c.running_mean, rng, -2.0, 2.0);
    FillRandom(c.running_var, rng, 0.05, 4.0);
  }
  c.Problem();
  return c;
}

namespace {

// The dtypes and parameter modes ParitySweep and RandomSpec draw from.
const std::vector<DType>& AllDTypes() {
  static const std::vector<DType> v = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  return v;
}
const std::vector<ParamMode>& RowParamModes() {
  static const std::vector<ParamMode> v = {
      ParamMode::kNone,   ParamMode::kGammaOnly,         ParamMode::kBetaOnly,
      ParamMode::kAffine, ParamMode::kAdaptivePerSample, ParamMode::kAdaptivePerPosition};
  return v;
}
const std::vector<ParamMode>& ChannelParamModes() {
  static const std::vector<ParamMode> v = {ParamMode::kNone, ParamMode::kGammaOnly, ParamMode::kBetaOnly,
                                           ParamMode::kAffine};
  return v;
}

}  // namespace

std::vector<CaseSpec> ParitySweep(uint64_t seed, int size) {
  Random rng(seed ^ 0x5eedf00dull);
  const std::vector<int64_t> cols = {1,   2,   3,   7,   8,   15,   17,   33,   64,  100,
                                     127, 129, 255, 333, 768, 1000, 1025, 2053, 4096};
  const std::vector<int64_t> small = {1, 2, 3, 5, 7};
  const std::vector<int64_t> spatial = {1, 3, 7, 16, 49};
  const std::vector<DType>& dtypes = AllDTypes();
  const std::vector<NormKind> kinds = {NormKind::kLayerNorm, NormKind::kRmsNorm, NormKind::kBatchNorm,
                                       NormKind::kGroupNorm, NormKind::kInstanceNorm};
  const std::vector<ParamMode>& row_modes = RowParamModes();
  const std::vector<ParamMode>& channel_modes = ChannelParamModes();

  // Spatial dims of x[N, C, *]: none, one, or two.
  auto spatial_dims = [&](std::vector<int64_t>& shape) {
    switch (rng.Below(3)) {
      case 0:
        break;
      case 1:
        shape.push_back(rng.Pick(spatial));
        break;
      default:
        shape.push_back(1 + rng.Below(9));
        shape.push_back(1 + rng.Below(9));
        break;
    }
  };

  std::vector<CaseSpec> specs;
  for (NormKind kind : kinds) {
    const bool row_kind = IsRowKind(kind);
    for (DType dtype : dtypes) {
      for (ParamMode mode : row_kind ? row_modes : channel_modes) {
        for (bool residual : {false, true}) {
          for (bool stats : {false, true}) {
            for (bool batch_stats : {false, true}) {
              if (batch_stats && kind != NormKind::kBatchNorm) continue;
              for (int n = 0; n < size; ++n) {
                CaseSpec s;
                s.kind = kind;
                s.dtype = dtype;
                s.params = mode;
                s.residual = residual;
                s.return_stats = stats;
                s.use_batch_stats = batch_stats;
                s.param_dtype = rng.Coin() ? DType::kFloat32 : dtype;
                s.unit_offset = mode != ParamMode::kNone && mode != ParamMode::kBetaOnly && rng.Below(3) == 0;
                if (rng.Coin()) s.output_dtype = rng.Pick(dtypes);
                if (rng.Below(8) == 0) s.epsilon = 0.0f;
                if (row_kind) {
                  const int64_t c = rng.Pick(cols);
                  const int64_t budget = std::max<int64_t>(1, 6000 / c);
                  if (rng.Below(4) == 0 && c <= 255) {
                    // Two normalized dims: [B, a, c] with k = 2.
                    s.normalized_dims = 2;
                    s.shape = {1 + rng.Below(4), rng.Pick(small), c};
                  } else if (rng.Coin()) {
                    s.shape = {1 + rng.Below(std::min<int64_t>(budget, 9)), c};
                  } else {
                    s.shape = {1 + rng.Below(4), 1 + rng.Below(std::min<int64_t>(budget, 5)), c};
                  }
                } else {
                  s.shape = {1 + rng.Below(kind == NormKind::kBatchNorm ? 5 : 3)};
                  if (kind == NormKind::kGroupNorm) {
                    s.num_groups = static_cast<int>(rng.Pick(std::vector<int64_t>{1, 2, 3, 4, 8}));
                    s.shape.push_back(s.num_groups * rng.Pick(std::vector<int64_t>{1, 2, 3, 5}));
                  } else {
                    s.shape.push_back(1 + rng.Below(12));
                  }
                  spatial_dims(s.shape);
                }
                specs.push_back(std::move(s));
              }
            }
          }
        }
      }
    }
  }
  return specs;
}

CaseSpec RandomSpec(uint64_t seed) {
  Random rng(seed ^ 0xf022c0deull);
  const std::vector<int64_t> edges = {1,    2,    7,    8,    9,    15,   16,   17,   31,   32,   33,
                                      63,   64,   65,   127,  128,  129,  255,  256,  257,  383,  384,
                                      385,  511,  512,  513,  767,  768,  769,  1023, 1024, 1025, 1536,
                                      2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193, 12289};
  const std::vector<DType>& dtypes = AllDTypes();
  CaseSpec s;
  const int64_t k = rng.Below(10);
  s.kind = k < 4   ? NormKind::kLayerNorm
           : k < 8 ? NormKind::kRmsNorm
                   : rng.Pick(std::vector<NormKind>{NormKind::kBatchNorm, NormKind::kGroupNorm,
                                                    NormKind::kInstanceNorm});
  const bool row_kind = IsRowKind(s.kind);
  s.dtype = rng.Pick(dtypes);
  s.params = rng.Pick(row_kind ? RowParamModes() : ChannelParamModes());
  s.param_dtype = rng.Coin() ? DType::kFloat32 : s.dtype;
  s.unit_offset = s.params != ParamMode::kNone && s.params != ParamMode::kBetaOnly && rng.Below(3) == 0;
  s.residual = rng.Below(4) == 0;
  s.return_stats = rng.Below(3) == 0;
  if (rng.Below(3) == 0) s.output_dtype = rng.Pick(dtypes);
  if (rng.Below(10) == 0) s.epsilon = 0.0f;
  if (row_kind) {
    const int64_t c = rng.Below(3) != 0 ? rng.Pick(edges) : 1 + rng.Below(6000);
    const int64_t rows = 1 + rng.Below(std::max<int64_t>(1, std::min<int64_t>(24, 60000 / c)));
    if (rng.Coin()) {
      s.shape = {rows, c};
    } else {
      s.shape = {1 + rng.Below(3), rows, c};
    }
  } else {
    s.use_batch_stats = s.kind == NormKind::kBatchNorm && rng.Coin();
    s.shape = {1 + rng.Below(4)};
    if (s.kind == NormKind::kGroupNorm) {
      s.num_groups = static_cast<int>(rng.Pick(std::vector<int64_t>{1, 2, 3, 4, 8}));
      s.shape.push_back(s.num_groups * rng.Pick(std::vector<int64_t>{1, 2, 3, 5}));
    } else {
      s.shape.push_back(1 + rng.Below(12));
    }
    for (int64_t d = rng.Below(3); d > 0; --d) s.shape.push_back(1 + rng.Below(40));
  }
  return s;
}

void PlantExactMeans(ProblemCase& c, uint64_t seed) {
  Random rng(seed ^ 0x3ea9u);
  const ProblemGeometry g = ComputeGeometry(c.Problem());
  // Each group's element indices: a row; an (n, g) block of C/G channels x S;
  // a BatchNorm channel's run of S in every sample.
  auto group_elements = [&g, &c](int64_t group) {
    std::vector<int64_t> e;
    if (IsRowKind(c.kind)) {
      for (int64_t i = 0; i < g.cols; ++i) e.push_back(group * g.cols + i);
    } else if (c.kind == NormKind::kBatchNorm) {
      for (int64_t n = 0; n < g.n; ++n) {
        for (int64_t s = 0; s < g.spatial; ++s) e.push_back((n * g.channels + group) * g.spatial + s);
      }
    } else {
      for (int64_t i = 0; i < g.group_size; ++i) e.push_back(group * g.group_size + i);
    }
    return e;
  };
  for (int64_t group = 0; group < g.groups; ++group) {
    std::vector<int64_t> e = group_elements(group);
    for (size_t i = e.size(); i > 1; --i) {
      std::swap(e[i - 1], e[static_cast<size_t>(rng.Below(static_cast<int64_t>(i)))]);
    }
    // m and d multiples of 1/16 (|m +- d| < 7), times a power of two: exact
    // in every dtype, and so is every partial sum in double.
    const float scale = std::ldexp(1.0f, static_cast<int>(rng.Below(9)) - 4);
    const float m = static_cast<float>(rng.Below(97) - 48) / 16.0f * scale;
    size_t i = 0;
    c.input.Set(e[i++], m);
    if (e.size() % 2 == 0) c.input.Set(e[i++], m);
    for (; i + 1 < e.size(); i += 2) {
      const float d = static_cast<float>(rng.Below(64)) / 16.0f * scale;
      c.input.Set(e[i], m + d);
      c.input.Set(e[i + 1], m - d);
    }
  }
  if (c.residual.present) std::fill(c.residual.bytes.begin(), c.residual.bytes.end(), uint8_t{0});
  c.name += " exact_means";
}

int64_t HalfUlpDistance(uint16_t a, uint16_t b) {
  // Sign-magnitude to a monotonic integer line; +0 and -0 both map to 0.
  auto key = [](uint16_t v) -> int64_t { return (v & 0x8000) ? -static_cast<int64_t>(v & 0x7fff) : v; };
  const int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}

std::vector<std::string> CompareToReference(Backend& backend, ProblemCase& c) {
  std::vector<std::string> failures;
  ProblemCase want = c;
  NormProblem wp = want.Problem();
  const KernelStatus valid = ValidateProblem(wp);
  if (!valid.ok()) {
    failures.push_back(c.name + ": the case is not valid: " + valid.message());
    return failures;
  }
  want.ResetOutputs();
  wp = want.Problem();
  ReferenceNormalize(wp);

  c.ResetOutputs();
  NormProblem p = c.Problem();
  const KernelStatus status = backend.Run(&p, 1);
  if (!status.ok()) {
    failures.push_back(c.name + ": " + std::string(backend.name()) + " Run failed with code " +
                       std::to_string(static_cast<int>(status.code())) + ": " + status.message());
    return failures;
  }
  const int64_t elements = c.input.NumElements();
  {
    FailureLog log(&failures, c.name + ": output");
    CompareValues(c, want.output, log);
  }
  if (c.residual.present) {
    FailureLog log(&failures, c.name + ": residual_out");
    CompareBits(c.residual_out.data(), want.residual_out.data(), elements, DTypeSize(c.input.dtype), log);
  }
  if (c.kind == NormKind::kRmsNorm) {
    // RMS_NORM never writes mean: the buffer must still hold the sentinel.
    FailureLog log(&failures, c.name + ": mean (RMS_NORM must not write it)");
    CompareBits(reinterpret_cast<const uint8_t*>(c.mean.data()),
                reinterpret_cast<const uint8_t*>(want.mean.data()), static_cast<int64_t>(c.mean.size()),
                sizeof(float), log);
  } else {
    FailureLog log(&failures, c.name + ": mean");
    CompareStats(c.mean, want.mean, log);
  }
  {
    FailureLog log(&failures, c.name + ": rstd");
    CompareStats(c.rstd, want.rstd, log);
  }
  {
    FailureLog log(&failures, c.name + ": variance");
    CompareStats(c.variance, want.variance, log);
  }
  return failures;
}

namespace {

// One independent unit of a problem: a row of LAYER/RMS or a sample n of the
// [N, C, *] kinds. Returns a case holding just that unit, and where its
// values sit in the full case's output and statistics.
struct UnitSlice {
  ProblemCase alone;
  int64_t element_begin = 0;  // of the unit's elements, in the full input
  int64_t stat_begin = 0;     // of its statistics
  int64_t stat_count = 0;
};

void CopyElements(const OwnedTensor& from, int64_t begin, OwnedTensor& to) {
  const size_t es = DTypeSize(from.dtype);
  std::memcpy(to.bytes.data(), from.bytes.data() + static_cast<size_t>(begin) * es, to.bytes.size());
}

UnitSlice SliceUnit(const ProblemCase& full, const ProblemGeometry& g, int64_t unit) {
  UnitSlice s;
  ProblemCase& a = s.alone;
  a = full;
  a.name = full.name + " unit " + std::to_string(unit);
  a.output.clear();
  std::vector<int64_t> shape;
  if (IsRowKind(full.kind)) {
    // [1, last k dims]; adaptive parameters become that row's own vector.
    shape.push_back(1);
    shape.insert(shape.end(), full.input.shape.end() - full.normalized_dims, full.input.shape.end());
    s.element_begin = unit * g.cols;
    s.stat_begin = unit;
    s.stat_count = 1;
    const std::vector<int64_t> param_shape(shape.begin() + 1, shape.end());
    for (auto [from, to] : {std::pair{&full.gamma, &a.gamma}, std::pair{&full.beta, &a.beta}}) {
      if (!from->present) continue;
      const RowBroadcast rows(full.input.shape, from->shape, full.normalized_dims);
      *to = OwnedTensor::Zeros(from->dtype, param_shape);
      CopyElements(*from, rows.Offset(unit), *to);
    }
  } else {
    shape = full.input.shape;
    shape[0] = 1;
    const int64_t per_sample = g.channels * g.spatial;
    s.element_begin = unit * per_sample;
    // BATCH_NORM inference statistics are per channel and the same for every sample.
    s.stat_begin = full.kind == NormKind::kBatchNorm ? 0 : unit * g.num_groups;
    s.stat_count = full.kind == NormKind::kBatchNorm ? g.channels : g.num_groups;
  }
  a.input = OwnedTensor::Zeros(full.input.dtype, shape);
  CopyElements(full.input, s.element_begin, a.input);
  if (full.residual.present) {
    a.residual = OwnedTensor::Zeros(full.residual.dtype, shape);
    CopyElements(full.residual, s.element_begin, a.residual);
  }
  a.Problem();
  return s;
}

void CompareUnit(const ProblemCase& full, const UnitSlice& s, const ProblemCase& got, const std::string& how,
                 std::vector<std::string>* failures) {
  const std::string prefix = got.name + " " + how + ": ";
  const int64_t elements = got.input.NumElements();
  {
    FailureLog log(failures, prefix + "output");
    const size_t es = DTypeSize(full.output_dtype);
    CompareBits(got.output.data(), full.output.data() + static_cast<size_t>(s.element_begin) * es, elements,
                es, log);
  }
  if (full.residual.present) {
    FailureLog log(failures, prefix + "residual_out");
    const size_t es = DTypeSize(full.input.dtype);
    CompareBits(got.residual_out.data(), full.residual_out.data() + static_cast<size_t>(s.element_begin) * es,
                elements, es, log);
  }
  for (auto [g, f, field] :
       {std::tuple{&got.mean, &full.mean, "mean"}, std::tuple{&got.rstd, &full.rstd, "rstd"}}) {
    if (g->empty()) continue;
    FailureLog log(failures, prefix + field);
    CompareBits(reinterpret_cast<const uint8_t*>(g->data()),
                reinterpret_cast<const uint8_t*>(f->data() + s.stat_begin), s.stat_count, sizeof(float), log);
  }
}

std::vector<std::string> RunStatus(const KernelStatus& status, const std::string& what) {
  if (status.ok()) return {};
  return {what + " failed with code " + std::to_string(static_cast<int>(status.code())) + ": " +
          status.message()};
}

}  // namespace

std::vector<std::string> CheckBatchInvariance(Backend& backend, const ProblemCase& c, uint64_t seed,
                                              int max_rows) {
  if (c.kind == NormKind::kBatchNorm && c.use_batch_stats) return {};
  std::vector<std::string> failures;
  ProblemCase full = c;
  NormProblem fp = full.Problem();
  const KernelStatus valid = ValidateProblem(fp);
  if (!valid.ok()) return {c.name + ": the case is not valid: " + valid.message()};
  const ProblemGeometry g = ComputeGeometry(fp);
  const int64_t units = IsRowKind(c.kind) ? g.rows : g.n;

  // (1) The whole problem alone: the bits everything else must reproduce.
  full.ResetOutputs();
  fp = full.Problem();
  failures = RunStatus(backend.Run(&fp, 1), c.name + ": Run(full)");
  if (!failures.empty()) return failures;

  Random rng(seed);
  std::vector<int64_t> picked = {0, units - 1};
  for (int i = 2; i < max_rows && i < units; ++i) picked.push_back(rng.Below(units));
  std::sort(picked.begin(), picked.end());
  picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
  if (static_cast<int>(picked.size()) > max_rows) picked.resize(static_cast<size_t>(max_rows));

  // (2) Each unit alone.
  std::vector<UnitSlice> slices;
  for (int64_t unit : picked) {
    slices.push_back(SliceUnit(full, g, unit));
    ProblemCase& a = slices.back().alone;
    NormProblem ap = a.Problem();
    std::vector<std::string> f = RunStatus(backend.Run(&ap, 1), a.name + ": Run(alone)");
    if (!f.empty()) return f;
    CompareUnit(full, slices.back(), a, "alone", &failures);
  }

  // (3) The units inside one batch with other problems of the same shape
  // (fresh values) and a second copy of the whole problem.
  ProblemCase before = full;
  ProblemCase after = full;
  before.name = c.name + " (fresh values, before)";
  after.name = c.name + " (fresh values, after)";
  {
    Random values(seed + 1);
    FillRows(before.input, values);
    FillRows(after.input, values);
  }
  ProblemCase again = full;
  again.name = c.name + " (inside a batch)";
  again.ResetOutputs();
  std::vector<ProblemCase> batched_slices;
  for (const UnitSlice& s : slices) {
    batched_slices.push_back(s.alone);
    batched_slices.back().ResetOutputs();
  }
  std::vector<NormProblem> batch;
  batch.push_back(before.Problem());
  for (size_t i = 0; i < batched_slices.size(); ++i) {
    batch.push_back(batched_slices[i].Problem());
    if (i == batched_slices.size() / 2) batch.push_back(again.Problem());
  }
  batch.push_back(after.Problem());
  {
    std::vector<std::string> f = RunStatus(backend.Run(batch.data(), batch.size()), c.name + ": Run(batch)");
    if (!f.empty()) return f;
  }
  for (size_t i = 0; i < slices.size(); ++i)
    CompareUnit(full, slices[i], batched_slices[i], "in a batch", &failures);
  UnitSlice whole;
  whole.stat_count = static_cast<int64_t>(full.rstd.empty() ? full.mean.size() : full.rstd.size());
  CompareUnit(full, whole, again, "whole problem", &failures);
  return failures;
}

std::string SummarizeFailures(const std::vector<std::string>& failures, size_t max_shown) {
  std::string text;
  for (size_t i = 0; i < failures.size() && i < max_shown; ++i) text += failures[i] + "\n";
  if (failures.size() > max_shown) text += std::to_string(failures.size() - max_shown) + " more\n";
  return text;
}

}  // namespace normserve::kernels::testing
