// Log-log least-squares fits of test RMSE against width and against parameter count.
#pragma once

#include <string>
#include <vector>

#include "gpusweep/sweep.h"

namespace gs {

struct LineFit {
  double slope = 0.0;
  double intercept = 0.0;  // of log(y) = intercept + slope * log(x)
  double r2 = 0.0;
  int points = 0;
};

// Least squares of log(y) on log(x). Throws std::invalid_argument when fewer than two
// distinct x are given or any value is not positive and finite.
LineFit fit_loglog(const std::vector<double>& x, const std::vector<double>& y);

struct GroupFit {
  std::string arch, activation, target;
  std::vector<int> widths;             // widths used in the fit
  std::vector<int> params;             // P at those widths
  std::vector<double> median_rmse;     // median test RMSE across seeds at each width
  bool ok = false;
  std::string note;                    // why there is no fit, when !ok
  LineFit vs_width, vs_params;
};

// One fit per (arch, activation, target), over the median across seeds (failed networks
// excluded) at each width >= min_width.
std::vector<GroupFit> fit_groups(const SweepSpec& spec, const std::vector<Job>& jobs,
                                 const std::vector<NetResult>& results, int min_width);

}  // namespace gs
