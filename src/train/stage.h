// What the step strategies of src/train share (strategy.h): the state of a Newton stage, the
// stop and damping rules, the damped Newton step, the linear stage's solve and the
// alternating projection. Private to src/train.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gpusweep/train/strategy.h"

namespace gs {
namespace stage {

// The state of a Newton stage (damped Newton or variable projection) over a batch.
struct StageState {
  const Batch& batch;
  const TrainOptions& opt;
  Block block;
  std::vector<NetResult>& res;
  std::vector<double> lambda;   // per network of the batch
  std::vector<double> loss0;    // loss at the start of the current step
  std::vector<double> gdotp;    // g . step of the current candidate
  std::vector<double> sgrad;    // scaled gradient / RMSE at the start of the current step
  std::vector<int> fallbacks;   // fallbacks taken in this stage
  std::vector<double> floor;    // rounding_floor at the stage's start (empty: not watched)
  // A network whose last step lowered its loss by less than opt.stationary_ftol: it leaves the
  // stage at the next assembly if it is stationary there (var_pro_step, assemble_and_screen).
  std::vector<char> settled;
  bool var_pro = false;         // the stage takes variable-projection steps
  // Set when a network leaves the stage by a stop test (not its step limit) at a point that
  // may not be stationary; the final status reads it (train). May be null.
  std::vector<char>* stopped_short;

  StageState(const Batch& b, const TrainOptions& o, Block blk, std::vector<NetResult>& r,
             std::vector<char>* shortstop)
      : batch(b), opt(o), block(blk), res(r), lambda(b.size(), o.lambda_init), loss0(b.size(), 0.0),
        gdotp(b.size(), 0.0), sgrad(b.size(), NAN), fallbacks(b.size(), 0), settled(b.size(), 0),
        stopped_short(shortstop) {}
};

void mark(NetResult& r, Status s, const std::string& why);

// A network leaves its stage by a stop test. Its status is provisional (train decides the
// final one from its stationarity); the reason says which test.
void stop(StageState& st, int i, const std::string& why);

// Assemble, then test each network for a non-finite loss or a vanishing gradient; returns
// those that take a step.
std::vector<int> assemble_and_screen(Backend& be, StageState& st, const std::vector<int>& active);

// One damped Newton step of the stage for every active network; returns those still active.
std::vector<int> newton_step(Backend& be, StageState& st, const std::vector<int>& active);

// The linear stage `block` of every listed network solved to its least-squares optimum in one
// rank-revealing solve (Backend::least_squares). The solution is kept unless it would raise
// the training loss, which only rounding at an optimum already reached can do.
void least_squares_stage(Backend& be, Block block, std::vector<NetResult>& res, const std::vector<int>& nets);

// One exact least-squares solve of each linear block (D, then U, Q, ... in factor order) of
// every listed network, with the others held. The sub-steps' own statuses go to scratch; only
// a numerical failure is carried over to res.
void project_linear(Backend& be, const Batch& batch, std::vector<NetResult>& res, std::vector<NetResult>& scratch,
                    const std::vector<int>& active);

// The training loss of each listed network, from the backend's gradient pass (no Hessian).
std::vector<double> losses(Backend& be, const Batch& batch, const std::vector<int>& nets);

// The strategies, one maker each (make_strategy calls them).
std::unique_ptr<StepStrategy> make_linear_least_squares(Block block, const StageContext& ctx);
std::unique_ptr<StepStrategy> make_damped_newton(Block block, bool alternating, const StageContext& ctx);
std::unique_ptr<StepStrategy> make_variable_projection(const StageContext& ctx);
std::unique_ptr<StepStrategy> make_adam(const StageContext& ctx);

}  // namespace stage
}  // namespace gs
