// The backend-agnostic Newton driver: runs a schedule of stages over a batch, with
// Levenberg-Marquardt damping on the Jacobi-scaled system, a batched Armijo line search,
// per-network status and an active set so finished networks cost nothing.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gpusweep/backend/backend.h"

namespace gs {

struct StageSpec {
  Block block;
  int steps;
};

// Parses "D,U,Q,G,ALL*100": comma-separated blocks (D, the factors G, U, Q, R, S, ... of
// arch.h, ALL), each with an optional "*steps" (default 1). A stage an architecture lacks is
// skipped for it. Throws std::invalid_argument naming the bad part.
std::vector<StageSpec> parse_schedule(const std::string& text);
std::string block_name(Block b);
// The stage names, for help and error messages: "D, U, Q, R, S, G, ALL".
std::string stage_names();

// Where training is, reported after every Newton step of a batch.
struct StepInfo {
  int stage, stages;  // index of the stage in the schedule, and their number
  Block block;
  int step, steps;    // steps done in this stage, and its limit
  int active;         // networks still training in this stage
  int batch;          // networks in the batch
};

// Which method trains: the Newton driver through the schedule, or Adam (Kingma and Ba 2015) on
// all parameters at once, for a fixed number of steps.
enum class Optimizer : int { kNewton = 0, kAdam = 1 };

struct AdamOptions {
  double lr = 1e-3;
  int steps = 10000;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

struct TrainOptions {
  Optimizer optimizer = Optimizer::kNewton;
  AdamOptions adam;           // with kAdam; the schedule is then unused
  std::vector<StageSpec> schedule;
  HessianKind hessian = HessianKind::kExact;
  double ftol = 1e-10;        // a stage stops when the loss falls by less than ftol * loss
  double gtol = 1e-10;        // ... or when the scaled gradient is below gtol * sqrt(loss)
  // A network is converged only when it is stationary (Status): its scaled gradient
  // (NetResult::scaled_grad) at most stationary_tol, or its training loss at the rounding
  // floor of its residuals (rounding_floor in host_solver.h).
  double stationary_tol = 1e-5;
  // Variable projection: how many times a network that stops short of a stationary point may
  // take the fallback (an alternating step) before it is called stalled.
  int fallbacks = 2;
  double lambda_init = 1e-9;  // damping relative to the unit diagonal of the scaled system
  double lambda_min = 1e-12;
  double lambda_max = 1e10;
  double armijo = 1e-4;
  bool project = true;        // after each ALL step, re-solve the linear blocks exactly
  // ... by variable projection (var_pro.h): Newton on the nonlinear parameters with the linear
  // ones eliminated. Off: damped Newton on all parameters, then one least-squares solve of
  // each linear block (D, U, Q) in turn.
  bool variable_projection = true;
  // A network whose loss comes within floor_margin times its stage-start rounding floor has
  // the floor measured again at its present parameters; at the floor it leaves the stage.
  double floor_margin = 16.0;
  // Variable projection's damping: Levenberg-Marquardt on the reduced system scaled to a unit
  // diagonal, updated from the gain ratio as Nielsen does. A network enters an ALL stage (and
  // comes back from a fallback) with var_pro_lambda_init; a kept step lowers it by at most the
  // factor lambda_drop (Nielsen's 1/3). The first calm_steps steps of a stage keep it at least
  // calm_lambda: from the spline start the reduced Hessian has directions of negative
  // curvature, and undamped steps along them (the saddle-free step of reduced_solve) leave its
  // basin for worse minima (1.5x to 5x at gqu widths 21 to 49 on invcos2, bench/RESULTS.md).
  double var_pro_lambda_init = 1e-3;
  double lambda_drop = 1.0 / 3.0;
  int calm_steps = 20;
  double calm_lambda = 1.0;
  // A kept variable-projection step is doubled while the loss keeps falling, up to
  // max_extrapolate times its length, when its gain ratio is above extrapolate_rho, or above
  // trust_rho with the model saying that the step stopped short along its direction.
  double extrapolate_rho = 1.5;
  double trust_rho = 0.5;
  double max_extrapolate = 16.0;
  // A stationary network (scaled gradient at most stationary_tol) leaves a variable-projection
  // stage once a step lowers its loss by less than stationary_ftol, relative, and the next
  // assembly finds it still stationary: near the noise floor of its least-squares solves
  // (about 1e-9 of the loss at width 200) steps only move it within the noise.
  double stationary_ftol = 1e-8;
  std::function<void(const StepInfo&)> on_step;  // progress; may be empty
};

// Where a network ended (Gpufit's FitState), decided after the last stage from its scaled
// gradient over the parameters the schedule trains:
//   converged  stationary: the scaled gradient at most TrainOptions::stationary_tol (after an
//              ALL stage, for relu on 1D inputs, with every kink that sits on a training
//              point measured by its least one-sided gradient: kink_scaled_gradient), or the
//              loss at the rounding floor;
//   max_steps  not stationary, and the schedule ran out (the last stage used all its steps, or
//              its stages are exact solves);
//   stalled    not stationary, and training stopped before its step limit because no step,
//              and no fallback, lowered the loss any more;
//   failed     the numbers went bad (non-finite loss, gradient or step).
enum class Status : int { kConverged = 0, kMaxSteps = 1, kFailed = 2, kStalled = 3 };
const char* status_name(Status s);
// Every status, in the order of the enum.
constexpr Status kAllStatuses[] = {Status::kConverged, Status::kMaxSteps, Status::kFailed, Status::kStalled};

struct NetResult {
  Status status = Status::kMaxSteps;
  std::string reason;
  int newton_steps = 0;
  // How far from an optimum training stopped: the Jacobi-scaled gradient of the training loss
  // at the final parameters over the ones the schedule trains (all of them when it has ALL),
  // max_i |g_i| / sqrt(H_ii) with H the Gauss-Newton Hessian, relative to the RMSE (a cosine
  // between the residual and a column of the Jacobian), and the relative decrease of the loss
  // by the last accepted step (NaN before any step).
  double scaled_grad = NAN;
  double rel_decrease = NAN;
  double train_rmse = 0.0;
  double test_rmse = 0.0;
  double seconds = 0.0;
  int start = 0;               // which start won (run_sweep with restarts): 0 the job's own
  std::vector<double> params;  // final parameters (filled by run_sweep)
};

// Trains every network of the batch already loaded into the backend through the schedule (or
// by Adam: options.optimizer). A network whose numbers go bad is marked failed and leaves the
// batch; the rest go on. With Adam, newton_steps counts Adam's steps, and a network that
// finishes them has status max_steps unless it is stationary.
std::vector<NetResult> train(Backend& backend, const Batch& batch, const TrainOptions& options);

}  // namespace gs
