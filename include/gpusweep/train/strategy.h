// The kinds of step the driver takes, one strategy each, as Ceres makes its trust-region
// strategies and linear solvers: train() owns one strategy for each stage of the schedule (or
// one for Adam), made by make_strategy, and a strategy acts on the active networks of the
// batch only through the Backend's batch operations.
#pragma once

#include <memory>
#include <vector>

#include "gpusweep/train/driver.h"

namespace gs {

enum class StepKind : int {
  // A linear stage of the schedule (D, U, Q, ...): its least-squares optimum in one
  // rank-revealing solve (Backend::least_squares), whatever its step count.
  kLinearLeastSquares = 0,
  // Levenberg-Marquardt damped Newton on the stage's parameters with a batched Armijo line
  // search (Backend::assemble, solve, trial_losses, apply_step): the G stage, and ALL with
  // --projection off.
  kDampedNewton = 1,
  // ALL with --projection alternate: a damped Newton step on all parameters, then one
  // least-squares solve of each linear block (D, then U, Q, ... in factor order).
  kAlternating = 2,
  // ALL with --projection on: Newton on the nonlinear parameters with the linear ones
  // eliminated (var_pro.h; Backend::var_pro_solve, var_pro_trial, var_pro_accept), with the
  // alternating step as its fallback.
  kVariableProjection = 3,
  // --optimizer adam: Adam on all parameters (Backend::gradient, add_params).
  kAdam = 4,
};
const char* step_kind_name(StepKind kind);

// The kind of step a stage takes under the options: kAdam for --optimizer adam, whatever the
// stage (train() then replaces the schedule by one ALL stage of --adam-steps steps, the only
// block make_strategy takes for Adam).
StepKind step_kind(const StageSpec& spec, const TrainOptions& options);

// What the strategies of one batch share. results[i] is network i's result, which a strategy
// updates (status, reason, steps, last decrease); stopped_short (null for a scratch run) has
// entry i set when a stage's stop test, not its step limit, took network i out at a point that
// may not be stationary (train's final status reads it).
struct StageContext {
  Backend& backend;
  const Batch& batch;
  const TrainOptions& options;
  std::vector<NetResult>& results;
  std::vector<char>* stopped_short;
};

class StepStrategy {
 public:
  virtual ~StepStrategy() = default;
  // The networks that enter the stage, in increasing order: none failed, each with the stage's
  // block. A strategy may move them to its start (variable projection: the optimal linear
  // parameters for the present nonlinear ones).
  virtual void enter(const std::vector<int>& nets) = 0;
  // One step of every listed network (entered and still active); returns those that stay in
  // the stage, in increasing order.
  virtual std::vector<int> step(const std::vector<int>& active) = 0;
  // After the stage's last step (variable projection: a network that ends with a higher loss
  // than it entered with gets its entry parameters back).
  virtual void leave() = 0;
};

// A strategy of the given kind for the stage `block`, acting through a copy of ctx (the objects
// ctx refers to must outlive it). Variable projection and Adam step the ALL stage only: another
// block throws std::invalid_argument.
std::unique_ptr<StepStrategy> make_strategy(StepKind kind, Block block, const StageContext& ctx);

}  // namespace gs
