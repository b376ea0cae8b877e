// The solver's host half, one math for both backends: the least-squares optimum of a linear
// stage (least_squares.h) and the variable-projection step of the ALL stage (var_pro.h), one
// network at a time. The CPU backend calls it on its own arrays; the CUDA backend on host
// copies of the parameters and of the systems its kernels assembled. Host only (LAPACK).
#pragma once

#include <functional>
#include <vector>

#include "gpusweep/batch.h"
#include "gpusweep/var_pro.h"

namespace gs {

// Training points on each side of a kink from which knot_curvature estimates its curvature.
constexpr int kKnotWindow = 8;

class HostSolver {
 public:
  // A 1D dataset's training points sorted by x (stable: ties keep their order), with the
  // prefix sums of x^j of relu1d.h (build_prefix, kNumMoments of them).
  struct Sorted {
    std::vector<double> x, y, pre;
  };

  // Scratch of one thread.
  struct Workspace {
    std::vector<double> resid, values, work, current;
    std::vector<Role> roles;
    std::vector<HessEntry> extra;
    ReducedSystem reduced;
  };

  // Keeps the batch's network shapes and datasets (which must outlive the solver) and sorts
  // each 1D dataset's training points. fast_relu1d: relu networks on 1D data compress their
  // Jacobian with compress_relu1d, else with compress_rows.
  void load(const Batch& batch, bool fast_relu1d = true);

  // Empty for a dataset with d > 1.
  const Sorted& sorted(int dataset) const { return sorted_[dataset]; }
  // A 1D dataset's sorted training points and the ends of its domain.
  Points1d points1d(int dataset) const;

  // The least-squares optimum of the parameters cols of network i, the other parameters held
  // at theta (a full parameter vector of network i, not necessarily its current one), into
  // values; writes the training MSE at theta and returns the numerical rank.
  int linear_optimum(int i, const double* theta, const std::vector<int>& cols, double* values,
                     double* loss, Workspace& w) const;

  // Backend::least_squares for one network: step (e - b entries) = the optimum of the stage
  // [b, e) minus its values in theta. Writes the training MSE at theta; returns the rank.
  int stage_step(int i, const double* theta, int b, int e, double* step, double* loss,
                 Workspace& w) const;

  // Backend::var_pro_solve for one network: from the exact Hessian H and gradient g over all
  // its parameters (column-major, both triangles) and their Jacobi scale, the damped reduced
  // Newton step into step (all parameters). Returns the Cholesky info; writes *pred.
  int var_pro_step(int i, const double* theta, const double* H, const double* g, const double* scale,
                   double lambda, double* step, double* pred, Workspace& w) const;

  // Backend::var_pro_trial for one network: trial = theta (+ step when step is not null),
  // its linear parameters then set to their least-squares optimum (the thin neurons' to zero).
  // Returns the trial's training MSE.
  double var_pro_trial(int i, const double* theta, const double* step, double* trial,
                       Workspace& w) const;

 private:
  std::vector<NetDesc> nets_;
  std::vector<const Dataset*> data_;
  std::vector<Sorted> sorted_;
  bool fast_relu1d_ = true;
};

// Sum of squared residuals of the network theta over the training points of ds.
double train_sse(const Shape& s, const double* theta, const Dataset& ds);

// Calls f(j, thread) for j < count on threads OpenMP threads (dynamic schedule, one index at
// a time); thread < threads names the caller's scratch. The first exception thrown by f is
// rethrown once every index has run.
void parallel_for(int count, int threads, const std::function<void(int, int)>& f);

}  // namespace gs
