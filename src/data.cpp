// Targets (built-in names and muparser expressions), CSV datasets, and the random streams.
#include "gpusweep/data.h"

#include "gpusweep/cli.h"

#include <muParser.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
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
struct Builtin {
  const char* name;
  const char* expr;
};
const Builtin kBuiltins[] = {
    {"x2", "x^2"},
    {"x3", "x^3"},
    {"cos4", "cos(4*x)"},
    {"sin4", "sin(4*x)"},
    {"sin4sq", "sin(4*(x-1)^2)"},
    {"runge1", "1/(1+x^2)"},
    {"runge9", "1/(1+9*x^2)"},
    {"atan", "atan(x)"},
    {"invcos2", "1/(1+cos(_pi*x)^2)"},
};

// Evaluates an expression in x at each point; throws on a parse error or a non-finite value.
std::vector<double> eval_expression(const std::string& target, const std::string& expr,
                                    const std::vector<double>& xs) {
  double xv = 0.0;
  mu::Parser parser;
  std::vector<double> out(xs.size());
  try {
    parser.DefineVar("x", &xv);
    parser.SetExpr(expr);
    xv = 0.0;
    parser.Eval();
    for (std::size_t k = 0; k < xs.size(); ++k) {
      xv = xs[k];
      out[k] = parser.Eval();
    }
  } catch (const mu::Parser::exception_type& e) {
    std::string names;
    for (const auto& b : kBuiltins) names += (names.empty() ? "" : ", ") + std::string(b.name);
    throw std::invalid_argument("--target '" + target + "' is neither a built-in name (" + names +
                                ") nor a valid expression in x: " + e.GetMsg());
  }
  for (std::size_t k = 0; k < xs.size(); ++k) {
    if (!std::isfinite(out[k])) {
      std::ostringstream os;
      os.precision(17);
      os << "--target '" << target << "' is not finite at x = " << xs[k] << " (value "
         << out[k] << ")";
      throw std::invalid_argument(os.str());
    }
  }
  return out;
}
}  // namespace

std::string builtin_target_expression(const std::string& name) {
  for (const auto& b : kBuiltins)
    if (name == b.name) return b.expr;
  return "";
}

std::vector<std::string> builtin_target_names() {
  std::vector<std::string> v;
  for (const auto& b : kBuiltins) v.push_back(b.name);
  return v;
}

Dataset make_target_dataset(const std::string& target, int points, std::uint64_t data_seed) {
  if (points < 2) throw std::invalid_argument("--points must be at least 2");
  std::string expr = builtin_target_expression(target);
  if (expr.empty()) expr = target;
  Dataset ds;
  ds.name = target;
  ds.d = 1;
  Rng rng(mix_seed(data_seed, hash_string(target)));
  ds.x_train.resize(points);
  for (auto& x : ds.x_train) x = -1.0 + 2.0 * rng.uniform();
  ds.x_test.resize(points);
  for (int k = 0; k < points; ++k) ds.x_test[k] = -1.0 + 2.0 * k / (points - 1);
  ds.y_train = eval_expression(target, expr, ds.x_train);
  ds.y_test = eval_expression(target, expr, ds.x_test);
  ds.lo = {-1.0};
  ds.hi = {1.0};
  ds.expression = expr;
  return ds;
}

std::vector<double> evaluate_target(const Dataset& ds, const std::vector<double>& xs) {
  if (ds.expression.empty())
    throw std::invalid_argument("the data " + ds.name + " gives points only, not f(x) between them");
  return eval_expression(ds.name, ds.expression, xs);
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

Dataset load_csv_dataset(const std::string& path, double test_fraction, std::uint64_t data_seed) {
  if (!(test_fraction >= 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("--test-fraction must be in [0, 1)");
  const std::string where = "--data " + printable(path);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw std::invalid_argument(where + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(where + ": cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::invalid_argument(where + ": cannot read the file");
  std::vector<std::string> lines = split_lines(text.str());
  if (!lines.empty() && lines[0].compare(0, 3, "\xEF\xBB\xBF") == 0) lines[0].erase(0, 3);
  std::vector<double> xs, ys;
  bool header = false;
  for (std::size_t k = 0; k < lines.size(); ++k) {
    const std::string& line = lines[k];
    const std::string at = where + ": line " + std::to_string(k + 1);
    if (trim(line).empty()) continue;
    const auto cells = split_csv_line(line);
    if (!header) {
      if (cells.size() != 2 || cells[0] != "x" || cells[1] != "y")
        throw std::invalid_argument(at + ": the header must be 'x,y'");
      header = true;
      continue;
    }
    if (cells.size() != 2)
      throw std::invalid_argument(at + ": expected 2 columns, found " + std::to_string(cells.size()));
    double v[2];
    for (int c = 0; c < 2; ++c) {
      const std::string cell = "'" + printable(cells[c], 40) + "'";
      if (!parse_number(cells[c], &v[c])) throw std::invalid_argument(at + ": " + cell + " is not a number");
      if (!std::isfinite(v[c])) throw std::invalid_argument(at + ": " + cell + " is not finite");
      // Squared errors summed over the rows must stay finite.
      if (std::fabs(v[c]) > kMaxDataMagnitude)
        throw std::invalid_argument(at + ": " + cell + " is too large (the limit is 1e100; rescale the data)");
    }
    xs.push_back(v[0]);
    ys.push_back(v[1]);
  }
  if (!header) throw std::invalid_argument(where + ": the file is empty (want a header 'x,y' and rows)");
  const int n = static_cast<int>(xs.size());
  const int n_test = test_fraction > 0.0 ? static_cast<int>(std::lround(test_fraction * n)) : 0;
  if (n - n_test < 2 || (test_fraction > 0.0 && n_test < 1))
    throw std::invalid_argument(where + ": " + std::to_string(n) +
                                " data rows are too few (need 2 training and 1 test point)");
  // A repeated x is allowed (repeated measurements; least squares takes them as they are),
  // but the inputs need a range.
  if (*std::min_element(xs.begin(), xs.end()) == *std::max_element(xs.begin(), xs.end()))
    throw std::invalid_argument(where + ": every x is the same; the inputs have no range");

  // Shuffle the row order deterministically, then split.
  std::vector<int> order(n);
  for (int k = 0; k < n; ++k) order[k] = k;
  Rng rng(mix_seed(data_seed, hash_string(path)));
  for (int k = n - 1; k > 0; --k) std::swap(order[k], order[rng.next() % (k + 1)]);
  Dataset ds;
  ds.name = path;
  ds.d = 1;
  for (int k = 0; k < n; ++k) {
    const int r = order[k];
    if (k < n_test) {
      ds.x_test.push_back(xs[r]);
      ds.y_test.push_back(ys[r]);
    } else {
      ds.x_train.push_back(xs[r]);
      ds.y_train.push_back(ys[r]);
    }
  }
  if (n_test == 0) {
    ds.x_test = ds.x_train;
    ds.y_test = ds.y_train;
  }
  ds.lo = {*std::min_element(ds.x_train.begin(), ds.x_train.end())};
  ds.hi = {*std::max_element(ds.x_train.begin(), ds.x_train.end())};
  if (ds.lo[0] == ds.hi[0])
    throw std::invalid_argument(where + ": the training rows (after holding out --test-fraction) all have x = " +
                                std::to_string(ds.lo[0]) + "; they need a range of x");
  return ds;
}

}  // namespace gs
