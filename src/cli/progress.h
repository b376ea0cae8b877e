// The progress line of a running sweep on stderr.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "gpusweep/train/driver.h"
#include "gpusweep/train/sweep.h"

namespace gs {

// Progress on a terminal: chunk, stage, step, active networks, elapsed time and an estimate.
class Progress {
 public:
  // The estimate counts Newton steps: stage k of the schedule is steps[k] of them.
  Progress(bool on, int total, const std::vector<StageSpec>& schedule);
  void step(const StepInfo& s);
  void chunk(const SweepProgress& p);
  void set_chunks(int n) { chunks_ = n; }

 private:
  double elapsed() const;
  static std::string eta(double el, double frac);
  bool on_;
  int total_, done_ = 0, chunk_ = 0, chunks_ = 1;
  std::vector<double> before_;
  double all_steps_ = 0.0;
  double last_ = -1.0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace gs
