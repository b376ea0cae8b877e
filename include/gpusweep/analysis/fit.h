// Log-log least-squares fits of test RMSE against width and against parameter count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpusweep/train/sweep.h"

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

// One network's outcome, as the fits see it: a row of results.csv.
struct FitRow {
  std::string arch, activation, target;
  int width = 0;
  int params = 0;
  int effective_params = 0;  // 0: unknown (a results.csv from before the column)
  int seed = 0;
  double test_rmse = 0.0;
  bool failed = false;
};

struct FitOptions {
  int min_width = 4;
  int max_width = 0;         // 0: no upper limit
  int bootstrap = 2000;      // resamples of the seeds for the interval of the median slope
  double level = 0.95;       // of the bootstrap interval
  std::uint64_t seed = 1;    // of the resampling
};

// The median over seeds of the per-seed slopes, with a bootstrap percentile interval (seeds
// resampled with replacement), and the median r^2 of the per-seed fits.
struct SlopeStat {
  double median = 0.0, lo = 0.0, hi = 0.0;
  double r2 = 0.0;
  int seeds = 0;  // seeds with a fit
};

struct GroupFit {
  std::string arch, activation, target;
  std::vector<int> widths;             // every width with a non-failed network
  std::vector<int> params;             // P at those widths
  std::vector<int> effective_params;   // effective P at those widths (empty: unknown)
  std::vector<double> median_rmse;     // median test RMSE across seeds at each width
  std::vector<double> min_rmse, max_rmse;  // across seeds at each width
  std::vector<int> fit_widths;         // the widths in the fit's range, which it used
  bool seeds_identical = false;        // several seeds, all with the same RMSE at every width
  bool ok = false;
  std::string note;                    // why there is no fit, when !ok
  LineFit vs_width, vs_params;         // fit of the median curve
  LineFit vs_effective;                // ... against effective P (when known)
  SlopeStat seed_vs_width, seed_vs_params;  // per-seed fits
  SlopeStat seed_vs_effective;
  std::string seed_note;               // seeds left out of the per-seed fits, and why
};

std::vector<FitRow> fit_rows(const SweepSpec& spec, const std::vector<Job>& jobs,
                             const std::vector<NetResult>& results);

// One fit per (arch, activation, target) in order of first appearance, with the RMSEs of
// every width, fitted over the widths in [min_width, max_width] with a non-failed network: a
// fit of the median curve across seeds, and per-seed fits summarized by their median slope
// and its bootstrap interval. A group
// that cannot be fitted (fewer than two widths, an RMSE that is not positive) has ok = false
// and a note that says why.
std::vector<GroupFit> fit_groups(const std::vector<FitRow>& rows, const FitOptions& options);
std::vector<GroupFit> fit_groups(const SweepSpec& spec, const std::vector<Job>& jobs,
                                 const std::vector<NetResult>& results, int min_width);

// Median of the values and its bootstrap percentile interval; deterministic for a seed.
SlopeStat bootstrap_median(const std::vector<double>& values, const std::vector<double>& r2,
                           int resamples, double level, std::uint64_t seed);

}  // namespace gs
