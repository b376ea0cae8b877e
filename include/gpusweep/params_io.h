// The trained parameters of a sweep on disk, and the small CSV reader that reads a results
// directory back: params.bin (raw little-endian float64, every network's vector in job
// order) with params_index.csv (one row per network: where its vector starts and its layout).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "gpusweep/sweep.h"

namespace gs {

// One row of params_index.csv. offset and count are in float64 values, not bytes.
struct ParamsEntry {
  std::string arch, activation, target;
  int width = 0, seed = 0;
  int d = 1, n = 0, factors = 0;  // input dimension, neurons, factors (1 mlp, 2 glu, 3 gqu)
  std::size_t offset = 0, count = 0;
};

// Writes DIR/params.bin and DIR/params_index.csv (each through a temporary file and a
// rename). Throws std::runtime_error when a file cannot be written.
void write_params(const std::string& dir, const SweepSpec& spec, const std::vector<Job>& jobs,
                  const std::vector<NetResult>& results);

// Reads DIR/params_index.csv. Throws std::invalid_argument naming the file and the problem.
std::vector<ParamsEntry> read_params_index(const std::string& dir);
// One network's parameters from DIR/params.bin. Throws std::invalid_argument when the file
// is missing or too short.
std::vector<double> read_params(const std::string& dir, const ParamsEntry& e);

// The Shape of an index row for the mlp/glu/gqu layout; false for an arch or activation this
// build does not know, or a count that does not match that layout.
bool entry_shape(const ParamsEntry& e, Shape* s);

// A CSV field, quoted when it holds a comma, a quote or a newline (as results.csv does).
std::string csv_quote(const std::string& field);

// A CSV table read with its header: rows of fields, column() finds a header name.
struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  // Index of a column; throws std::invalid_argument naming the file when it is missing.
  int column(const std::string& name) const;
};
// Reads a CSV file with quoted fields. Throws std::invalid_argument (missing file, empty
// file, a row whose field count differs from the header's, an unterminated quote).
CsvTable read_csv_table(const std::string& path);

// Number parsing for the readers: the whole field must be a number, else
// std::invalid_argument naming where.
double parse_double_field(const std::string& s, const std::string& where);
long long parse_int_field(const std::string& s, const std::string& where);

}  // namespace gs
