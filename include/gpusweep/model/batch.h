// A ragged batch: networks of any arch and width side by side in one flat parameter array,
// each with its offset and the dataset it trains on. No per-network heap objects.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "gpusweep/model/network.h"

namespace gs {

// Training and test points of one target, shared by every network that fits it.
// Inputs are row-major: point k is x[k*d .. k*d + d).
struct Dataset {
  std::string name;
  std::string expression;  // f(x) for a target; empty for points read from a file
  int d = 1;
  std::vector<double> x_train, y_train;
  std::vector<double> x_test, y_test;
  std::vector<double> lo, hi;  // per-dimension range of the training inputs, for initialization
  // The affine map from the source's units to the ones trained on: x = (x_src - x_center) /
  // x_scale per input, y = (y_src - y_center) / y_scale. The identity unless standardized.
  std::vector<double> x_center, x_scale;
  double y_center = 0.0, y_scale = 1.0;
  bool standardized = false;
  int n_train() const { return static_cast<int>(y_train.size()); }
  int n_test() const { return static_cast<int>(y_test.size()); }
};

struct NetDesc {
  Shape shape;
  int dataset;          // index into Batch::datasets
  std::size_t offset;   // start of this network's parameters in Batch::params
};

// Where each listed network's values start when the networks' num_params values are packed
// one after another in list order (the layout of Backend::gradient); entry list.size() is
// the total.
std::vector<std::size_t> packed_offsets(const std::vector<NetDesc>& nets, const std::vector<int>& list);

struct Batch {
  std::vector<NetDesc> nets;
  std::vector<const Dataset*> datasets;
  std::vector<double> params;  // all networks' parameters, concatenated

  int size() const { return static_cast<int>(nets.size()); }
  // Appends a network with the given parameters and returns its index. Throws
  // std::logic_error for a shape whose polynomial has more than kMaxPolyTerms terms.
  int add(const Shape& s, int dataset, const double* theta);
};

}  // namespace gs
