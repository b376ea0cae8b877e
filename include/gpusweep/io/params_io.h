// The trained parameters of a sweep on disk: params.bin (raw little-endian float64, every network's vector in job
// order) with params_index.csv (one row per network: where its vector starts and its layout).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "gpusweep/train/sweep.h"
#include "gpusweep/util/csv.h"

namespace gs {

// One row of params_index.csv. offset and count are in float64 values, not bytes.
struct ParamsEntry {
  std::string arch, activation, target;
  int width = 0, seed = 0;
  int d = 1, n = 0, factors = 0;  // input dimension, neurons, factors (1 mlp, 2 glu, 3 gqu)
  int poly_terms = 0;             // coefficients of each neuron's output polynomial (1 gated:K)
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

// The Shape of an index row; false for an arch or activation this build does not know, or a
// layout (factors, poly_terms, count) that does not match it.
bool entry_shape(const ParamsEntry& e, Shape* s);

}  // namespace gs
