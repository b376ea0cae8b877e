// Targets and datasets: built-in target names, expressions in x (muparser), the user's CSV
// points, deterministic sampling of training points and the test grid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpusweep/batch.h"

namespace gs {

// The expression behind a built-in target name, or "" when the name is not built in.
std::string builtin_target_expression(const std::string& name);
std::vector<std::string> builtin_target_names();

// A target given by name or expression in x, sampled at `points` uniform random training
// points on [-1, 1] (from data_seed) and at an equally spaced test grid of the same count.
// Throws std::invalid_argument with one line naming the problem (a parse error, a value that
// is not finite on the domain).
Dataset make_target_dataset(const std::string& target, int points, std::uint64_t data_seed);

// f of a dataset made from a target, at any points (its expression evaluated again). Throws
// std::invalid_argument for a dataset read from a file, which has no f between its points.
std::vector<double> evaluate_target(const Dataset& ds, const std::vector<double>& xs);

// Reads a CSV with a header and columns x, y (LF, CRLF or CR line ends, an optional UTF-8
// BOM). A random test_fraction of the rows (from data_seed) is held out as test points; with
// test_fraction 0 the test points are the training points. Throws std::invalid_argument with
// one line naming the file and problem: no header, a row without two numbers, a value that is
// not finite or beyond kMaxDataMagnitude, a repeated x, too few rows.
constexpr double kMaxDataMagnitude = 1e100;
Dataset load_csv_dataset(const std::string& path, double test_fraction, std::uint64_t data_seed);

// Deterministic random numbers that do not depend on the standard library's distributions.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  double uniform();  // [0, 1)
  double normal();   // N(0, 1)

 private:
  std::uint64_t s_[4];
};

std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b);
std::uint64_t hash_string(const std::string& s);

}  // namespace gs
