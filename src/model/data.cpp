// Targets (built-in names and muparser expressions), CSV datasets, and the random streams.
#include "gpusweep/model/data.h"

#include "gpusweep/util/text.h"

#include <muParser.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>
#include <stdexcept>

namespace gs {

// ---- random numbers: xoshiro256** seeded through splitmix64 --------------------------------

namespace {
std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(std::uint64_t seed) {
  for (auto& s : s_) s = splitmix(seed);
}

std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  // Box-Muller; 1 - u keeps the logarithm finite.
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586477 * u2);
}

std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a ^ (b * 0xD6E8FEB86659FD93ull);
  return splitmix(x);
}

std::uint64_t hash_string(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// ---- targets -----------------------------------------------------------------------------

namespace {
// Where a built-in target's inputs come from: the cube [-1, 1]^d, or Friedman's ranges (after
// which the data are standardized).
enum class Domain { kCube, kFriedman };

struct Builtin {
  const char* name;
  const char* expr;
  int d;
  Domain domain;
};
const Builtin kBuiltins[] = {
    {"x2", "x^2", 1, Domain::kCube},
    {"x3", "x^3", 1, Domain::kCube},
    {"cos4", "cos(4*x)", 1, Domain::kCube},
    {"sin4", "sin(4*x)", 1, Domain::kCube},
    {"sin4sq", "sin(4*(x-1)^2)", 1, Domain::kCube},
    {"runge1", "1/(1+x^2)", 1, Domain::kCube},
    {"runge9", "1/(1+9*x^2)", 1, Domain::kCube},
    {"atan", "atan(x)", 1, Domain::kCube},
    {"invcos2", "1/(1+cos(_pi*x)^2)", 1, Domain::kCube},
    {"x2_y2", "x^2*y^2", 2, Domain::kCube},
    {"x3_y3", "x^3*y^3", 2, Domain::kCube},
    {"cos_cos", "cos(4*x)*cos(4*y)", 2, Domain::kCube},
    {"sin_sin", "sin(4*x)*sin(4*y)", 2, Domain::kCube},
    {"sin_sin_r2", "sin(4*x)*sin(4*y)*(x^2+y^2)", 2, Domain::kCube},
    {"runge9_2d", "1/(1+9*x^2+9*y^2)", 2, Domain::kCube},
    {"atan_sum", "atan(x+y)", 2, Domain::kCube},
    // Friedman (1991), "Multivariate adaptive regression splines", as in scikit-learn's
    // make_friedman1..3 (friedman1 with its 5 informative inputs only), without noise.
    {"friedman1", "10*sin(_pi*x1*x2)+20*(x3-0.5)^2+10*x4+5*x5", 5, Domain::kFriedman},
    {"friedman2", "sqrt(x1^2+(x2*x3-1/(x2*x4))^2)", 4, Domain::kFriedman},
    {"friedman3", "atan((x2*x3-1/(x2*x4))/x1)", 4, Domain::kFriedman},
};

const Builtin* find_builtin(const std::string& name) {
  for (const auto& b : kBuiltins)
    if (name == b.name) return &b;
  return nullptr;
}

// The source range of input j of a built-in target.
void input_range(const Builtin* b, int j, double* lo, double* hi) {
  *lo = -1.0;
  *hi = 1.0;
  if (!b || b->domain != Domain::kFriedman) return;
  *lo = 0.0;
  *hi = 1.0;
  if (b->d == 4) {  // friedman2 and friedman3
    const double pi = 3.141592653589793;
    const double l[4] = {0.0, 40 * pi, 0.0, 1.0}, h[4] = {100.0, 560 * pi, 1.0, 11.0};
    *lo = l[j];
    *hi = h[j];
  }
}

// The input index a variable name stands for: x and x1 are input 0, y and x2 input 1, xk
// input k-1; -1 for any other name.
int variable_index(const std::string& name) {
  if (name == "x") return 0;
  if (name == "y") return 1;
  if (name.size() < 2 || name.size() > 5 || name[0] != 'x' || name[1] == '0') return -1;
  int k = 0;
  for (std::size_t c = 1; c < name.size(); ++c) {
    if (name[c] < '0' || name[c] > '9') return -1;
    k = 10 * k + (name[c] - '0');
  }
  return k >= 1 && k <= kMaxDim ? k - 1 : -1;
}

// A target expression, parsed once and evaluated at many points. Its variables are created
// as muparser meets them, then checked against the names the inputs have.
class Expression {
 public:
  Expression(const std::string& target, const std::string& expr) : target_(target) {
    try {
      parser_.SetVarFactory(&Expression::make_var, this);
      parser_.SetExpr(expr);
      parser_.GetUsedVar();  // parses, creating the variables it names
    } catch (const mu::Parser::exception_type& e) {
      throw std::invalid_argument("--target '" + target + "' is neither a built-in name (see --help) nor a "
                                  "valid expression in x, or x and y, or x1..xd: " + e.GetMsg());
    }
    bool plain = false, indexed = false;
    for (const auto& [name, slot] : slots_) {
      const int k = variable_index(name);
      if (k < 0)
        throw std::invalid_argument("--target '" + target + "': unknown variable '" + name +
                                    "' (the inputs are x, or x and y, or x1..xd with d <= " +
                                    std::to_string(kMaxDim) + ")");
      (name == "x" || name == "y" ? plain : indexed) = true;
      vars_.push_back({k, slot});
      min_dim_ = std::max(min_dim_, k + 1);
    }
    if (plain && indexed)
      throw std::invalid_argument("--target '" + target + "': name the inputs either x and y or x1..xd, not both");
  }
  Expression(const Expression&) = delete;
  Expression& operator=(const Expression&) = delete;

  // The dimension the variables imply (1 for a constant).
  int min_dim() const { return min_dim_; }

  // f at each of the points xs (row-major, d >= min_dim() per point).
  std::vector<double> eval(const std::vector<double>& xs, int d) {
    const std::size_t n = xs.size() / d;
    std::vector<double> out(n);
    try {
      for (std::size_t k = 0; k < n; ++k) {
        for (const auto& [j, slot] : vars_) *slot = xs[k * d + j];
        out[k] = parser_.Eval();
      }
    } catch (const mu::Parser::exception_type& e) {
      throw std::invalid_argument("--target '" + target_ + "': " + e.GetMsg());
    }
    for (std::size_t k = 0; k < n; ++k) {
      if (std::isfinite(out[k])) continue;
      std::ostringstream os;
      os.precision(17);
      os << "--target '" << target_ << "' is not finite at x = ";
      if (d > 1) os << "(";
      for (int j = 0; j < d; ++j) os << (j ? ", " : "") << xs[k * d + j];
      if (d > 1) os << ")";
      os << " (value " << out[k] << ")";
      throw std::invalid_argument(os.str());
    }
    return out;
  }

 private:
  static double* make_var(const char* name, void* self) {
    auto* e = static_cast<Expression*>(self);
    e->store_.push_back(0.0);
    e->slots_.push_back({name, &e->store_.back()});
    return &e->store_.back();
  }

  std::string target_;
  mu::Parser parser_;
  std::deque<double> store_;  // the variables' values; a deque keeps their addresses
  std::vector<std::pair<std::string, double*>> slots_;
  std::vector<std::pair<int, double*>> vars_;  // (input index, value slot)
  int min_dim_ = 1;
};

// An expression target must be finite on all of its domain [-1, 1]^d, not only at the points
// drawn: 1/x passes a draw that misses 0. It is evaluated on a fine grid that holds 0 and the
// ends (in 1D, 2^16 + 1 points; in 2D, 257 x 257; beyond, 129 points along each axis through
// the centre), and in 1D each sign change and each peak of |f| between grid points is narrowed down
// to the last bits, where a pole (1/(x - 0.3), tan(2x)) shows as |f| without bound.
void check_domain(Expression& f, const std::string& target, int d) {
  std::vector<double> xs;
  if (d == 1) {
    const int n = (1 << 16) + 1;
    xs.resize(n);
    for (int k = 0; k < n; ++k) xs[k] = -1.0 + 2.0 * k / (n - 1);
  } else if (d == 2) {
    const int m = 257;
    for (int i = 0; i < m; ++i)
      for (int k = 0; k < m; ++k) {
        xs.push_back(-1.0 + 2.0 * k / (m - 1));
        xs.push_back(-1.0 + 2.0 * i / (m - 1));
      }
  } else {
    // Each axis through the centre, 129 points from end to end (0 and +-0.5 among them).
    for (int j = 0; j < d; ++j) {
      std::vector<double> line(static_cast<std::size_t>(129) * d, 0.0);
      for (int k = 0; k < 129; ++k) line[static_cast<std::size_t>(k) * d + j] = -1.0 + k / 64.0;
      f.eval(line, d);
    }
    return;
  }
  const std::vector<double> ys = f.eval(xs, d);  // throws, naming the point, where f is not finite
  if (d != 1) return;
  double top = 0.0;
  for (double y : ys) top = std::max(top, std::fabs(y));
  auto at = [&](double x) { return f.eval({x}, 1)[0]; };
  auto pole = [&](double x, double v) {
    std::ostringstream os;
    os.precision(17);
    os << "--target '" << target << "' has a pole at x = " << x << " inside its domain [-1, 1] (|f| reaches "
       << std::setprecision(3) << v << " there, against at most " << top
       << " on a grid of the domain); a network cannot fit it";
    throw std::invalid_argument(os.str());
  };
  // A value or its neighbour far above every grid value, once the interval has no room left.
  const double far = 100.0 * std::max(top, 1e-300);
  int narrowed = 0;
  for (std::size_t k = 0; k + 1 < ys.size() && narrowed < 4000; ++k) {
    double a = xs[k], b = xs[k + 1], fa = ys[k], fb = ys[k + 1];
    if ((fa < 0.0 && fb > 0.0) || (fa > 0.0 && fb < 0.0)) {  // a root, a jump or a pole of odd order
      ++narrowed;
      for (int it = 0; it < 200; ++it) {
        const double m = 0.5 * (a + b);
        if (!(m > a && m < b)) break;
        const double fm = at(m);
        if (fm == 0.0) break;
        ((fm < 0.0) == (fa < 0.0) ? a : b) = m;
        ((fm < 0.0) == (fa < 0.0) ? fa : fb) = fm;
      }
      if (std::min(std::fabs(fa), std::fabs(fb)) > far)
        pole(std::fabs(fa) < std::fabs(fb) ? a : b, std::min(std::fabs(fa), std::fabs(fb)));
    } else if (k > 0 && std::fabs(ys[k]) > std::fabs(ys[k - 1]) && std::fabs(ys[k]) > std::fabs(fb) &&
               std::fabs(ys[k]) > 1e3 * std::fabs(ys[0]) + 1e3 * std::fabs(ys.back())) {
      // A sharp peak of |f|: a pole of even order (1/(x - 0.3)^2) hides between grid points.
      ++narrowed;
      double lo = xs[k - 1], hi = xs[k + 1];
      for (int it = 0; it < 200; ++it) {
        const double m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
        if (!(m1 > lo && m2 < hi && m1 < m2)) break;
        if (std::fabs(at(m1)) < std::fabs(at(m2))) lo = m1;
        else hi = m2;
      }
      const double m = 0.5 * (lo + hi), fm = std::fabs(at(m));
      if (fm > far) pole(m, fm);
    }
  }
}

// Per-input minimum and maximum of the training points: the box initialization draws from.
void set_ranges(Dataset& ds) {
  ds.lo.assign(ds.d, HUGE_VAL);
  ds.hi.assign(ds.d, -HUGE_VAL);
  for (int k = 0; k < ds.n_train(); ++k)
    for (int j = 0; j < ds.d; ++j) {
      const double v = ds.x_train[static_cast<std::size_t>(k) * ds.d + j];
      ds.lo[j] = std::min(ds.lo[j], v);
      ds.hi[j] = std::max(ds.hi[j], v);
    }
}

// Mean and standard deviation of v[k * stride + j] over k (population form); a constant
// column gets scale 1.
void moments(const std::vector<double>& v, int stride, int j, double* center, double* scale) {
  const std::size_t n = v.size() / stride;
  double m = 0.0;
  for (std::size_t k = 0; k < n; ++k) m += v[k * stride + j];
  m /= static_cast<double>(n);
  double ss = 0.0;
  for (std::size_t k = 0; k < n; ++k) ss += (v[k * stride + j] - m) * (v[k * stride + j] - m);
  const double sd = std::sqrt(ss / static_cast<double>(n));
  *center = m;
  *scale = sd > 0.0 && std::isfinite(sd) ? sd : 1.0;
}

// Shifts and scales every input and the output to mean 0, deviation 1 on the training points;
// the test points get the same map.
void standardize(Dataset& ds) {
  const int d = ds.d;
  ds.x_center.resize(d);
  ds.x_scale.resize(d);
  for (int j = 0; j < d; ++j) {
    moments(ds.x_train, d, j, &ds.x_center[j], &ds.x_scale[j]);
    for (auto* xs : {&ds.x_train, &ds.x_test})
      for (std::size_t k = j; k < xs->size(); k += d) (*xs)[k] = ((*xs)[k] - ds.x_center[j]) / ds.x_scale[j];
  }
  moments(ds.y_train, 1, 0, &ds.y_center, &ds.y_scale);
  for (auto* ys : {&ds.y_train, &ds.y_test})
    for (double& y : *ys) y = (y - ds.y_center) / ds.y_scale;
  ds.standardized = true;
}

void set_identity_map(Dataset& ds) {
  ds.x_center.assign(ds.d, 0.0);
  ds.x_scale.assign(ds.d, 1.0);
  ds.y_center = 0.0;
  ds.y_scale = 1.0;
  ds.standardized = false;
}
}  // namespace

std::string builtin_target_expression(const std::string& name) {
  const Builtin* b = find_builtin(name);
  return b ? b->expr : "";
}

std::vector<std::string> builtin_target_names() {
  std::vector<std::string> v;
  for (const auto& b : kBuiltins) v.push_back(b.name);
  return v;
}

std::string builtin_target_list() {
  std::string s;
  for (const auto& b : kBuiltins) {
    s += s.empty() ? "" : ", ";
    s += std::string(b.name) + " = " + b.expr;
    if (b.domain == Domain::kFriedman) s += " (d = " + std::to_string(b.d) + ", standardized)";
  }
  return s;
}

Dataset make_target_dataset(const std::string& target, int points, std::uint64_t data_seed, int dim) {
  if (points < 2) throw std::invalid_argument("--points must be at least 2");
  if (dim < 0 || dim > kMaxDim) throw std::invalid_argument("--dim must be in 1.." + std::to_string(kMaxDim));
  const Builtin* b = find_builtin(target);
  const std::string expr = b ? b->expr : target;
  Expression f(target, expr);
  int d = b ? b->d : f.min_dim();
  if (dim > 0) {
    if (b && dim != b->d)
      throw std::invalid_argument("--dim " + std::to_string(dim) + ": the built-in target '" + target +
                                  "' has d = " + std::to_string(b->d));
    if (dim < f.min_dim())
      throw std::invalid_argument("--target '" + target + "' uses input " + std::to_string(f.min_dim()) +
                                  " but --dim is " + std::to_string(dim));
    d = dim;
  }
  const std::size_t nd = static_cast<std::size_t>(points) * d;
  if (nd > (std::size_t{1} << 31))
    throw std::invalid_argument("--points " + std::to_string(points) + " in d = " + std::to_string(d) +
                                " is more than 2^31 coordinates");
  std::vector<double> lo(d), hi(d);
  for (int j = 0; j < d; ++j) input_range(b, j, &lo[j], &hi[j]);
  Dataset ds;
  ds.name = target;
  ds.d = d;
  ds.expression = expr;
  const std::uint64_t stream = mix_seed(data_seed, hash_string(target));
  Rng rng(stream);
  ds.x_train.resize(nd);
  for (std::size_t k = 0; k < nd; ++k) ds.x_train[k] = lo[k % d] + (hi[k % d] - lo[k % d]) * rng.uniform();
  const bool friedman = b && b->domain == Domain::kFriedman;
  if (d == 1 && !friedman) {
    ds.x_test.resize(points);
    for (int k = 0; k < points; ++k) ds.x_test[k] = -1.0 + 2.0 * k / (points - 1);
  } else if (d == 2 && !friedman) {
    const int m = std::max(2, static_cast<int>(std::lround(std::sqrt(static_cast<double>(points)))));
    ds.x_test.resize(2 * static_cast<std::size_t>(m) * m);
    for (int i = 0; i < m; ++i)
      for (int k = 0; k < m; ++k) {  // row-major in y, x fastest
        ds.x_test[2 * (static_cast<std::size_t>(i) * m + k)] = -1.0 + 2.0 * k / (m - 1);
        ds.x_test[2 * (static_cast<std::size_t>(i) * m + k) + 1] = -1.0 + 2.0 * i / (m - 1);
      }
  } else {
    Rng test_rng(mix_seed(stream, 0x7e57));
    ds.x_test.resize(nd);
    for (std::size_t k = 0; k < nd; ++k) ds.x_test[k] = lo[k % d] + (hi[k % d] - lo[k % d]) * test_rng.uniform();
  }
  ds.y_train = f.eval(ds.x_train, d);
  ds.y_test = f.eval(ds.x_test, d);
  if (!b) check_domain(f, target, d);
  if (friedman) {
    standardize(ds);
    set_ranges(ds);
  } else {
    set_identity_map(ds);
    ds.lo = lo;
    ds.hi = hi;
  }
  return ds;
}

std::vector<double> evaluate_target(const Dataset& ds, const std::vector<double>& xs) {
  if (ds.expression.empty())
    throw std::invalid_argument("the data " + ds.name + " gives points only, not f(x) between them");
  const int d = ds.d;
  std::vector<double> src(xs);
  if (ds.standardized)
    for (std::size_t k = 0; k < src.size(); ++k) src[k] = src[k] * ds.x_scale[k % d] + ds.x_center[k % d];
  Expression f(ds.name, ds.expression);
  std::vector<double> y = f.eval(src, d);
  if (ds.standardized)
    for (double& v : y) v = (v - ds.y_center) / ds.y_scale;
  return y;
}

// ---- CSV ---------------------------------------------------------------------------------

namespace {
std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) cells.push_back(trim(cell));
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

bool parse_number(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// The lines of a text with LF, CRLF or lone CR line ends.
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t e = text.find_first_of("\r\n", pos);
    if (e == std::string::npos) {
      lines.push_back(text.substr(pos));
      break;
    }
    lines.push_back(text.substr(pos, e - pos));
    pos = e + (text[e] == '\r' && e + 1 < text.size() && text[e + 1] == '\n' ? 2 : 1);
  }
  return lines;
}
}  // namespace

std::string read_data_file(const std::string& path, const std::string& name) {
  std::string where = "--data " + printable(name);
  if (path != name) where += " (" + printable(path) + ")";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw std::invalid_argument(where + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(where + ": cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::invalid_argument(where + ": cannot read the file");
  return text.str();
}

Dataset load_csv_dataset(const std::string& path, double test_fraction, std::uint64_t data_seed,
                         bool standardize_data) {
  if (!(test_fraction >= 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("--test-fraction must be in [0, 1)");
  return csv_dataset(read_data_file(path, path), path, test_fraction, data_seed, standardize_data);
}

Dataset csv_dataset(const std::string& text, const std::string& path, double test_fraction,
                    std::uint64_t data_seed, bool standardize_data) {
  if (!(test_fraction >= 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("--test-fraction must be in [0, 1)");
  const std::string where = "--data " + printable(path);
  std::vector<std::string> lines = split_lines(text);
  if (!lines.empty() && lines[0].compare(0, 3, "\xEF\xBB\xBF") == 0) lines[0].erase(0, 3);
  std::vector<double> xs, ys;
  int cols = 0;  // d + 1, once the header is read
  for (std::size_t k = 0; k < lines.size(); ++k) {
    const std::string& line = lines[k];
    const std::string at = where + ": line " + std::to_string(k + 1);
    if (trim(line).empty()) continue;
    const auto cells = split_csv_line(line);
    if (!cols) {
      const std::string want = "the header must name the inputs and then y, as 'x,y' or 'x1,x2,y'";
      if (cells.size() < 2 || cells.back() != "y") throw std::invalid_argument(at + ": " + want);
      if (cells.size() - 1 > static_cast<std::size_t>(kMaxDim))
        throw std::invalid_argument(at + ": " + std::to_string(cells.size() - 1) + " input columns (at most " +
                                    std::to_string(kMaxDim) + ")");
      std::set<std::string> names;
      for (std::size_t c = 0; c + 1 < cells.size(); ++c) {
        if (cells[c].empty()) throw std::invalid_argument(at + ": input column " + std::to_string(c + 1) + " has no name");
        if (printable(cells[c], 1000) != cells[c] || cells[c].compare(0, 3, "\xEF\xBB\xBF") == 0)
          throw std::invalid_argument(at + ": the column name '" + printable(cells[c], 40) +
                                      "' holds a control character or a second byte-order mark");
        if (cells[c] == "y" || !names.insert(cells[c]).second)
          throw std::invalid_argument(at + ": the column name '" + printable(cells[c], 40) + "' is repeated");
      }
      cols = static_cast<int>(cells.size());
      continue;
    }
    if (static_cast<int>(cells.size()) != cols)
      throw std::invalid_argument(at + ": expected " + std::to_string(cols) + " columns, found " +
                                  std::to_string(cells.size()));
    for (int c = 0; c < cols; ++c) {
      const std::string cell = "'" + printable(cells[c], 40) + "'";
      double v;
      if (!parse_number(cells[c], &v)) throw std::invalid_argument(at + ": " + cell + " is not a number");
      if (!std::isfinite(v)) throw std::invalid_argument(at + ": " + cell + " is not finite");
      // Squared errors summed over the rows must stay finite.
      if (std::fabs(v) > kMaxDataMagnitude)
        throw std::invalid_argument(at + ": " + cell + " is too large (the limit is 1e100; rescale the data)");
      (c + 1 < cols ? xs : ys).push_back(v);
    }
  }
  if (!cols) throw std::invalid_argument(where + ": the file is empty (want a header such as 'x,y' and rows)");
  const int d = cols - 1;
  const int n = static_cast<int>(ys.size());
  const int n_test = test_fraction > 0.0 ? static_cast<int>(std::lround(test_fraction * n)) : 0;
  if (test_fraction > 0.0 ? n < 3 : n < 2)
    throw std::invalid_argument(where + ": " + std::to_string(n) +
                                " data rows are too few (need 2 training and 1 test point)");
  if (n - n_test < 2 || (test_fraction > 0.0 && n_test < 1)) {
    std::ostringstream os;
    os << where << ": --test-fraction " << test_fraction << " of its " << n << " rows leaves " << (n - n_test)
       << " training and " << n_test << " test rows, too few (need 2 training rows and 1 test row)";
    throw std::invalid_argument(os.str());
  }
  // A repeated x is allowed (repeated measurements; least squares takes them as they are),
  // but the inputs need a range.
  auto varies = [d](const std::vector<double>& v) {
    for (std::size_t k = d; k < v.size(); ++k)
      if (v[k] != v[k % d]) return true;
    return false;
  };
  if (!varies(xs))
    throw std::invalid_argument(where + (d == 1 ? ": every x is the same; the inputs have no range"
                                                : ": every input column is constant; the inputs have no range"));

  // Shuffle the row order deterministically, then split.
  std::vector<int> order(n);
  for (int k = 0; k < n; ++k) order[k] = k;
  Rng rng(mix_seed(data_seed, hash_string(path)));
  for (int k = n - 1; k > 0; --k) std::swap(order[k], order[rng.next() % (k + 1)]);
  Dataset ds;
  ds.name = path;
  ds.d = d;
  for (int k = 0; k < n; ++k) {
    const int r = order[k];
    auto& x = k < n_test ? ds.x_test : ds.x_train;
    x.insert(x.end(), xs.begin() + static_cast<std::ptrdiff_t>(r) * d,
             xs.begin() + static_cast<std::ptrdiff_t>(r + 1) * d);
    (k < n_test ? ds.y_test : ds.y_train).push_back(ys[r]);
  }
  if (n_test == 0) {
    ds.x_test = ds.x_train;
    ds.y_test = ds.y_train;
  }
  if (!varies(ds.x_train)) {
    std::ostringstream os;
    os.precision(17);
    os << where << ": the training rows (after holding out --test-fraction) all have x = ";
    if (d > 1) os << "(";
    for (int j = 0; j < d; ++j) os << (j ? ", " : "") << ds.x_train[j];
    if (d > 1) os << ")";
    os << "; they need a range of x";
    throw std::invalid_argument(os.str());
  }
  if (standardize_data) standardize(ds);
  else set_identity_map(ds);
  set_ranges(ds);
  return ds;
}

}  // namespace gs
