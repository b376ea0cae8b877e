// Targets and datasets: built-in target names, expressions in x (muparser), the user's CSV
// points, deterministic sampling of training points and the test grid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpusweep/model/batch.h"

namespace gs {

// The largest input dimension a target or data file may have.
constexpr int kMaxDim = 1000;

// The expression behind a built-in target name, or "" when the name is not built in.
std::string builtin_target_expression(const std::string& name);
std::vector<std::string> builtin_target_names();
// "name = expression" for each built-in target, for the help text and errors.
std::string builtin_target_list();

// A target given by name or expression, sampled at `points` training points and as many test
// points (from data_seed).
// - Expressions are in x (1D), x and y (2D), or x1..xd; d is the largest index used, or `dim`
//   when that is given (> 0) and not smaller. They live on [-1, 1]^d: the training points are
//   uniform random there; the test points are an equally spaced grid for d = 1, an m x m grid
//   (m = round(sqrt(points))) for d = 2, and a separate random draw for d > 2.
// - The built-in 1D and 2D names are expressions of that kind. friedman1 (d = 5), friedman2
//   and friedman3 (d = 4) draw training and test inputs alike from their published input
//   ranges, noise-free, and are standardized (inputs and output) on the training points.
// Throws std::invalid_argument with one line naming the problem (a parse error, an unknown
// variable, a dimension that disagrees with `dim`, a value that is not finite).
Dataset make_target_dataset(const std::string& target, int points, std::uint64_t data_seed, int dim = 0);

// f of a dataset made from a target, at any points in the dataset's units (row-major, d per
// point; standardized for the Friedman targets). Throws std::invalid_argument for a dataset
// read from a file, which has no f between its points.
std::vector<double> evaluate_target(const Dataset& ds, const std::vector<double>& xs);

// Reads a CSV with a header naming d >= 1 input columns and, last, the output column y (the
// 1D form is 'x,y'), with LF, CRLF or CR line ends and an optional UTF-8 BOM. A random
// test_fraction of the rows (from data_seed) is held out as test points; with test_fraction
// 0 the test points are the training points. With `standardize`, each input and the output
// are shifted and scaled to mean 0 and standard deviation 1 on the training rows (an input
// constant there is only shifted), and the test rows get the same map. Throws
// std::invalid_argument with one line naming the file and problem: no header, a row with
// the wrong number of cells, a cell that is not a number, not finite or beyond
// kMaxDataMagnitude, too few rows, inputs without a range.
constexpr double kMaxDataMagnitude = 1e100;
Dataset load_csv_dataset(const std::string& path, double test_fraction, std::uint64_t data_seed,
                         bool standardize = true);
// The same from the file's bytes. `name` is the dataset's name, which its messages, results
// and the split of its rows (through data_seed) go by: the --data text as the user gave it.
Dataset csv_dataset(const std::string& text, const std::string& name, double test_fraction,
                    std::uint64_t data_seed, bool standardize = true);
// The bytes of the file at path; std::invalid_argument naming `name` (and path, when it
// differs) when it is a directory or cannot be read.
std::string read_data_file(const std::string& path, const std::string& name);

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
