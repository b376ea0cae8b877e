// The solver's host half, one math for both backends: the least-squares optimum of a linear
// stage (least_squares.h) and the variable-projection step of the ALL stage (var_pro.h), one
// network at a time. The CPU backend calls it on its own arrays; the CUDA backend on host
// copies of the parameters and of the systems its kernels assembled. Host only (LAPACK).
#pragma once

#include <functional>
#include <vector>

#include "gpusweep/model/batch.h"
#include "gpusweep/solver/var_pro.h"

namespace gs {

class HostSolver {
 public:
  // A 1D dataset's training points sorted by x (stable: ties keep their order), with the
  // prefix sums of x^j of relu1d.h (build_prefix, kNumMoments of them), and pos[k], the sorted
  // position of training point k.
  struct Sorted {
    std::vector<double> x, y, pre;
    std::vector<int> pos;
  };

  // Scratch of one thread, grow-only: once the sizes have been met, a step allocates nothing.
  struct Workspace {
    std::vector<double> resid, values, work, current;
    std::vector<Role> roles;
    std::vector<double> curvature;
    VarProColumns cols;
    LsSystem ls, js;  // the compressions of linear_optimum and var_pro_system
    LsScratch lss;
  };

  // Keeps the batch's network shapes and datasets (which must outlive the solver) and sorts
  // each 1D dataset's training points. fast_relu1d: relu networks on 1D data compress their
  // Jacobian with compress_relu1d, else with compress_rows.
  void load(const Batch& batch, bool fast_relu1d = true);

  // Empty for a dataset with d > 1.
  const Sorted& sorted(int dataset) const { return sorted_[dataset]; }
  // Network i's shape.
  const Shape& shape(int i) const { return nets_[i].shape; }
  // A 1D dataset's sorted training points and the ends of its domain.
  Points1d points1d(int dataset) const;

  // The residuals y(x_k) - f_k of network i (relu on 1D inputs) at theta, at the sorted
  // training points of its dataset, into r: evaluate's values to the bit, each neuron summed
  // over its active range only (relu1d.h).
  void sorted_residuals(int i, const double* theta, std::vector<double>& r) const;

  // The least-squares optimum of the parameters cols of network i, the other parameters held
  // at theta (a full parameter vector of network i, not necessarily its current one), into
  // values; writes the training MSE at theta and returns the numerical rank.
  int linear_optimum(int i, const double* theta, const std::vector<int>& cols, double* values,
                     double* loss, Workspace& w) const;

  // Backend::least_squares for one network: step (e - b entries) = the optimum of the stage
  // [b, e) minus its values in theta. Writes the training MSE at theta; returns the rank.
  int stage_step(int i, const double* theta, int b, int e, double* step, double* loss,
                 Workspace& w) const;

  // The reduced Newton system of network i at theta (var_pro.h): its roles, its compressed
  // Jacobian and residual curvature, and their QR into sys. scale: the Jacobi scale of all its
  // parameters. H, the exact Hessian over all of them (column-major), is read only by networks
  // outside the relu 1D fast path (their residual curvature is H less its Gauss-Newton part);
  // it may be null for the others. resid: for those others, their residuals at theta at the
  // sorted training points (sorted_residuals), when the caller has them; null: computed here.
  // main: the QR of the main linear columns of the trial that made theta (var_pro_trial's keep),
  // when the caller has it (reduced_system).
  void var_pro_system(int i, const double* theta, const double* H, const double* scale,
                      ReducedSystem* sys, Workspace& w, const double* resid = nullptr,
                      const MainQr* main = nullptr) const;

  // Backend::var_pro_trial for one network: trial = theta (+ alpha step when step is not null),
  // the kinks of its thin neurons pushed out of the domain (push_out_thin), its linear
  // parameters then set to their least-squares optimum.
  // Returns the trial's training MSE. resid, when not null, receives the trial's residuals at
  // the sorted training points (sorted_residuals) where the relu 1D path computed them, and is
  // left empty elsewhere. keep, when not null, receives the QR of the main linear columns where
  // the linear solve took least_squares_values's QR path (MainQr; its cols are left empty
  // elsewhere). scale, when not null: the Jacobi scale of all the network's parameters (of its
  // last ALL assembly); that QR takes the linear columns it leaves out last (LsScratch::late),
  // so that a reduced system that leaves out the same ones can start from it.
  double var_pro_trial(int i, const double* theta, const double* step, double* trial,
                       Workspace& w, double alpha = 1.0, std::vector<double>* resid = nullptr,
                       MainQr* keep = nullptr, const double* scale = nullptr) const;

 private:
  std::vector<NetDesc> nets_;
  std::vector<const Dataset*> data_;
  std::vector<Sorted> sorted_;
  bool fast_relu1d_ = true;
};

// What the variable-projection step keeps per network of a loaded batch between calls, for
// either backend: its reduced system, built once per assembly (a damping retry only solves it
// again), and, for relu on 1D inputs, the residuals at the sorted training points of its
// parameters and of its last trial, each made once per parameter vector (the accepted trial's
// are the next assembly's and the next reduced system's). Calls for different networks may
// run on different threads at once.
class HostVarPro {
 public:
  void load(int networks);
  // Network i was assembled again: its reduced system is stale.
  void assembled(int i) { system_ok_[i] = 0; }
  // Whether network i's reduced system is kept (solve() then reads neither H nor theta).
  bool has_system(int i) const { return system_ok_[i] != 0; }
  // Network i's parameters changed other than by accept(): its residuals are stale, and so are
  // its system and the QR of its main linear columns.
  void moved(int i) {
    resid_ok_[i] = 0;
    system_ok_[i] = 0;
    qr_ok_[i] = 0;
  }
  // The residuals of network i (relu on 1D inputs) at theta, its present parameters.
  const std::vector<double>& residuals(const HostSolver& host, int i, const double* theta);
  // Backend::var_pro_solve for network i: its system (HostSolver::var_pro_system, built once
  // per assembly; the gradient is not needed, the reduced gradient comes from the QR), then the
  // damped step (reduced_solve) into step (all parameters). Returns reduced_solve's info;
  // writes *model.
  int solve(const HostSolver& host, int i, const double* theta, const double* H, const double* scale,
            double lambda, double* step, StepModel* model, HostSolver::Workspace& w);
  // Backend::var_pro_trial for network i (HostSolver::var_pro_trial, its residuals and the QR
  // of its main linear columns kept).
  // scale, when not null: the Jacobi scale of network i's last assembly of the ALL stage (by
  // parameter), for HostSolver::var_pro_trial.
  double trial(const HostSolver& host, int i, const double* theta, const double* step, double* trial,
               HostSolver::Workspace& w, double alpha, const double* scale = nullptr);
  // Network i's parameters are now its last trial: the trial's residuals and main QR are its
  // own (the next system starts from that QR: MainQr), and its system is stale.
  void accept(int i);

 private:
  std::vector<ReducedSystem> system_;
  std::vector<std::vector<double>> resid_, trial_resid_;
  std::vector<MainQr> qr_, trial_qr_;
  std::vector<char> system_ok_, resid_ok_, trial_resid_ok_, qr_ok_, trial_qr_ok_;
};

// The operations of one evaluation of the residuals y(x_k) - f_k of a network at npoints points
// (the count of tally.h).
double residual_flops(const Shape& s, int npoints);

// Sum of squared residuals of the network theta over the training points of ds.
double train_sse(const Shape& s, const double* theta, const Dataset& ds);

// The training MSE below which the residuals are rounding: at each training point the sum of
// the magnitudes that evaluating r = y - f adds up (|f|, |d0| and each neuron's |term|), times
// kFloorUlps units in the last place of 1, squared and averaged. A network there can lower its
// loss no further in float64, and its gradient is noise, so it counts as stationary.
// The floor is the problem's, not one the network made for itself: each point's sum is capped
// at kFloorTermCap times the largest |f| of the training targets. A network whose neurons have
// grown to cancel one another (terms 1e7 and more against targets of 1) has a rounding noise
// far above what the target needs; it must then be stationary by its gradient. (With every
// target zero the floor is zero: such a network is converged by its gradient alone.)
constexpr double kFloorUlps = 64.0;
constexpr double kFloorTermCap = 1e4;
double rounding_floor(const Shape& s, const double* theta, const Dataset& ds);

// Relu on 1D inputs: the loss is piecewise smooth in the gates. Where a kink sits on a
// training point x_k, the gradient of the gate (G_i, g_i) jumps between two one-sided values
// as x_k leaves or joins the neuron's active side (by 2/N r_k q_i(x_k) m_i(x_k) (x_k, 1), the
// neuron's other factors at the point; its value there is zero, so no other derivative
// jumps). A minimum there is a corner: its one-sided derivatives have opposite signs, and the
// gradient of either side need not vanish. This returns the scaled gradient of NetResult
// (Jacobi-scaled by the Gauss-Newton diagonal, over the RMSE; rows whose diagonal is at most
// kSingularRel of the largest left out, as jacobi_scale does) in which the gate of every
// neuron whose kink sits at its nearest training point takes the element of least scaled norm
// on the segment between the two one-sided gradients (Clarke's generalized gradient). A kink
// counts as sitting at the point when moving it there changes the loss, to first order, by at
// most at_point times the loss. Off the relu 1D path it returns the plain scaled gradient.
double kink_scaled_gradient(const Shape& s, const double* theta, const Dataset& ds, double at_point);

// Calls f(j, thread) for j < count on threads OpenMP threads (dynamic schedule, one index at
// a time); thread < threads names the caller's scratch. The first exception thrown by f is
// rethrown once every index has run.
void parallel_for(int count, int threads, const std::function<void(int, int)>& f);

}  // namespace gs
