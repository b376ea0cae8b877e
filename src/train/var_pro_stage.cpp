// Variable projection's stage (strategy.h, var_pro.h): its steps, their extrapolation, the
// alternating fallback, and the entry and exit of the stage.
#include <algorithm>
#include <cmath>
#include <string>

#include "gpusweep/solver/host_solver.h"
#include "gpusweep/solver/var_pro.h"
#include "stage.h"

namespace gs {
namespace stage {
namespace {


// The fallback of variable projection for networks that stop short of a stationary point (no
// step lowers the loss at any damping, or it falls by less than ftol, while the scaled
// gradient is above stationary_tol): one step of the alternating method (a damped Newton step
// on all parameters with the exact Hessian and a line search, then the exact solve of each
// linear block), then the projection's own solve of the linear parameters. A network whose
// loss it lowers goes back to the stage, with fresh damping; the others get their parameters
// back and stop.
void fallback_step(Backend& be, StageState& st, std::vector<double>& nu, const std::vector<int>& nets,
                   std::vector<int>& keep) {
  const Batch& batch = st.batch;
  const std::vector<double> before = losses(be, batch, nets);
  std::vector<double> theta;
  be.read_params(theta);
  std::vector<NetResult> scratch(batch.size()), sub(batch.size());
  StageState all(batch, st.opt, Block::kAll, scratch, nullptr);
  newton_step(be, all, nets);
  project_linear(be, batch, scratch, sub, nets);
  std::vector<int> live;
  for (int i : nets)
    if (scratch[i].status != Status::kFailed) live.push_back(i);
  std::vector<double> after(nets.size(), NAN);
  if (!live.empty()) {
    std::vector<double> trial(live.size());
    be.var_pro_trial(live, false, trial.data());
    be.var_pro_accept(live);
    for (std::size_t j = 0, q = 0; j < nets.size(); ++j)
      if (q < live.size() && live[q] == nets[j]) after[j] = trial[q++];
  }
  std::vector<int> back;
  std::vector<double> values;
  for (std::size_t j = 0; j < nets.size(); ++j) {
    const int i = nets[j];
    st.res[i].newton_steps += scratch[i].newton_steps;
    ++st.fallbacks[i];
    const std::string why = st.res[i].reason;
    if (std::isfinite(after[j]) && before[j] - after[j] > st.opt.ftol * before[j]) {
      st.res[i].rel_decrease = (before[j] - after[j]) / before[j];
      mark(st.res[i], Status::kMaxSteps, "step limit of stage ALL");
      st.lambda[i] = st.opt.var_pro_lambda_init;
      nu[i] = 2.0;
      keep.push_back(i);
      continue;
    }
    // No gain: the parameters of before the fallback, and a stop.
    back.push_back(i);
    const std::size_t off = batch.nets[i].offset;
    values.insert(values.end(), theta.begin() + off, theta.begin() + off + num_params(batch.nets[i].shape));
    stop(st, i, why + "; the fallback did not lower the loss");
  }
  if (!back.empty()) be.set_params(back, values.data());
}

// A kept step is extended along its own direction, doubling its length while the exact loss (the
// trial) keeps falling, up to opt.max_extrapolate times (extrapolate), in two cases. Its actual
// decrease is well above the model's (gain ratio above opt.extrapolate_rho): it went where the loss
// is flatter than the model says (the kinks crossed training points, whose jumps in the
// gradient no per-point Hessian holds). Or the model was right about it (gain ratio above
// opt.trust_rho) and says itself that the step stopped short: along the step's direction it has no
// minimum (curvature <= 0) or one beyond twice the step (StepModel). The damping and the
// saddle-free absolute values make that common where the reduced Hessian is indefinite: at
// the wide gqu of the 1..200 sweep, where the roots of the factors sit close to the kinks
// (half of the reduced Hessian's eigenvalues negative over hundreds of steps), the loss falls
// along directions of negative curvature, each step as far as |curvature| allows; doubled,
// most of them are kept (bench/RESULTS.md). st.loss0 holds each network's loss after its
// accepted step.
// Whether the model says that a step (gain ratio rho) stopped short along its direction.
bool stopped_short_of_model(const StepModel& m, double rho, double trust_rho) {
  return rho > trust_rho && (m.curvature <= 0.0 || -m.slope > 2.0 * m.curvature);
}

void extrapolate(Backend& be, StageState& st, std::vector<int> nets) {
  double total = 1.0;
  while (!nets.empty() && 2.0 * total <= st.opt.max_extrapolate) {
    // theta already holds the trial at `total` times the step; one more `total` doubles it.
    const std::vector<double> alpha(nets.size(), total);
    std::vector<double> loss(nets.size());
    be.var_pro_trial(nets, true, loss.data(), alpha.data());
    std::vector<int> better;
    for (std::size_t j = 0; j < nets.size(); ++j)
      if (std::isfinite(loss[j]) && loss[j] < st.loss0[nets[j]]) {
        st.loss0[nets[j]] = loss[j];
        better.push_back(nets[j]);
      }
    if (!better.empty()) be.var_pro_accept(better);
    nets.swap(better);
    total *= 2.0;
  }
}

// One variable-projection step (var_pro.h) for every active network of the ALL stage; returns
// those still active. A trial is kept when it lowers the loss; the damping follows the ratio of
// the actual to the predicted decrease (Nielsen), and grows until a trial is kept. A network
// that would stop short of a stationary point takes the fallback first (fallback_step).
std::vector<int> var_pro_step(Backend& be, StageState& st, std::vector<double>& nu,
                              const std::vector<int>& active) {
  std::vector<int> keep, fallback;
  auto leave = [&](int i, const std::string& why) {
    if (st.sgrad[i] > st.opt.stationary_tol && st.fallbacks[i] < st.opt.fallbacks) {
      st.res[i].reason = why;
      fallback.push_back(i);
    } else {
      stop(st, i, why);
    }
  };
  std::vector<int> pending = assemble_and_screen(be, st, active);
  std::vector<double> start(st.batch.size(), NAN);  // the loss at the start of the step
  while (!pending.empty()) {
    const std::size_t m = pending.size();
    std::vector<double> lam(m);
    std::vector<StepModel> model(m);
    std::vector<int> info(m);
    for (std::size_t j = 0; j < m; ++j) lam[j] = st.lambda[pending[j]];
    be.var_pro_solve(pending, lam.data(), info.data(), model.data());
    std::vector<int> ready, retry, stretch;
    std::vector<StepModel> ready_model;
    auto refuse = [&](int i, const std::string& why, bool fault) {
      st.lambda[i] *= nu[i];
      nu[i] *= 2.0;
      if (st.lambda[i] <= st.opt.lambda_max) {
        retry.push_back(i);
      } else if (fault) {
        mark(st.res[i], Status::kFailed, why + " at maximum damping");
      } else {
        leave(i, why + " at maximum damping");
      }
    };
    for (std::size_t j = 0; j < m; ++j) {
      const int i = pending[j];
      if (info[j] > 0) {
        refuse(i, "no factorization", true);
      } else if (!std::isfinite(model[j].pred)) {
        refuse(i, "non-finite step", true);
      } else if (model[j].pred <= 0.0) {
        leave(i, "reduced gradient zero");
      } else {
        ready.push_back(i);
        ready_model.push_back(model[j]);
      }
    }
    if (!ready.empty()) {
      std::vector<double> trial(ready.size());
      be.var_pro_trial(ready, true, trial.data());
      std::vector<int> accepted;
      for (std::size_t j = 0; j < ready.size(); ++j) {
        const int i = ready[j];
        const double drop = st.loss0[i] - trial[j];
        if (!(std::isfinite(trial[j]) && drop > 0.0)) {
          refuse(i, "no decrease", false);
          continue;
        }
        accepted.push_back(i);
        const double rho = drop / ready_model[j].pred;
        if (rho > st.opt.extrapolate_rho || stopped_short_of_model(ready_model[j], rho, st.opt.trust_rho))
          stretch.push_back(i);
        st.loss0[i] = trial[j];
        const double c = 2.0 * rho - 1.0;
        st.lambda[i] = std::max(st.lambda[i] * std::max(st.opt.lambda_drop, 1.0 - c * c * c), st.opt.lambda_min);
        nu[i] = 2.0;
        start[i] = trial[j] + drop;
      }
      if (!accepted.empty()) be.var_pro_accept(accepted);
      extrapolate(be, st, stretch);
      for (int i : accepted) {
        const double drop = start[i] - st.loss0[i];
        st.res[i].rel_decrease = drop / start[i];
        if (drop <= st.opt.ftol * start[i])
          leave(i, "loss change below ftol");
        else
          keep.push_back(i);
        // Stationary at the step's start and hardly lowered by it: the next assembly decides,
        // at the point where the network would stop.
        st.settled[i] = drop <= st.opt.stationary_ftol * start[i] && st.sgrad[i] <= st.opt.stationary_tol;
      }
    }
    std::sort(retry.begin(), retry.end());
    pending.swap(retry);
  }
  if (!fallback.empty()) {
    std::sort(fallback.begin(), fallback.end());
    fallback_step(be, st, nu, fallback, keep);
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}


// After a variable-projection stage: a network whose loss is higher than when it entered
// (loss_in, per entered network; theta_in, the batch's parameters then) gets its entry
// parameters back. That happens where the entry was more accurate than any solve in the
// network's own basis can be: the spline initialization of gated:3 and gated:4, fitted in
// B-splines, whose truncated powers are far worse conditioned. So training never ends
// worse than the stage began.
void keep_the_better(Backend& be, const Batch& batch, const std::vector<int>& entered,
                     const std::vector<double>& loss_in, const std::vector<double>& theta_in,
                     std::vector<NetResult>& res) {
  std::vector<int> live;
  std::vector<double> was;
  for (std::size_t j = 0; j < entered.size(); ++j)
    if (res[entered[j]].status != Status::kFailed) {
      live.push_back(entered[j]);
      was.push_back(loss_in[j]);
    }
  if (live.empty()) return;
  const std::vector<double> now = losses(be, batch, live);
  std::vector<int> back;
  std::vector<double> values;
  for (std::size_t j = 0; j < live.size(); ++j) {
    if (!(now[j] > was[j])) continue;
    const int i = live[j];
    back.push_back(i);
    const std::size_t off = batch.nets[i].offset;
    values.insert(values.end(), theta_in.begin() + off, theta_in.begin() + off + num_params(batch.nets[i].shape));
    // The status stays (a stage that ran out of steps still did); the reason says what
    // was kept, and no step of the stage counts as the last decrease.
    res[i].reason += "; kept the ALL stage's start (its loss was lower)";
    res[i].rel_decrease = 0.0;
  }
  if (!back.empty()) be.set_params(back, values.data());
}


class VariableProjection final : public StepStrategy {
 public:
  explicit VariableProjection(const StageContext& ctx)
      : ctx_(ctx), st_(ctx.batch, ctx.options, Block::kAll, ctx.results, ctx.stopped_short),
        nu_(ctx.batch.size(), 2.0) {
    st_.var_pro = true;
  }

  // The networks that enter, their loss and their parameters then: a network that leaves the
  // stage with a higher loss gets them back (leave).
  void enter(const std::vector<int>& nets) override {
    if (nets.empty()) return;
    Backend& be = ctx_.backend;
    const Batch& batch = ctx_.batch;
    entered_ = nets;
    loss_in_ = losses(be, batch, nets);
    be.read_params(theta_in_);
    // Start from the optimal linear parameters for the current nonlinear ones, with the same
    // rule for thin neurons as every trial, so that the trials compare like with like.
    std::fill(st_.lambda.begin(), st_.lambda.end(), st_.opt.var_pro_lambda_init);
    std::vector<double> start(nets.size());
    be.var_pro_trial(nets, false, start.data());
    be.var_pro_accept(nets);
    std::vector<double> theta;
    be.read_params(theta);
    st_.floor.assign(batch.size(), 0.0);
    for (int i : nets) {
      const NetDesc& nd = batch.nets[i];
      st_.floor[i] = rounding_floor(nd.shape, theta.data() + nd.offset, *batch.datasets[nd.dataset]);
    }
  }

  std::vector<int> step(const std::vector<int>& active) override {
    if (steps_++ < st_.opt.calm_steps)
      for (int i : active) st_.lambda[i] = std::max(st_.lambda[i], st_.opt.calm_lambda);
    return var_pro_step(ctx_.backend, st_, nu_, active);
  }

  void leave() override {
    if (!entered_.empty()) keep_the_better(ctx_.backend, ctx_.batch, entered_, loss_in_, theta_in_, ctx_.results);
  }

 private:
  const StageContext ctx_;
  StageState st_;
  std::vector<double> nu_;  // Nielsen's factor of the damping's rise, per network
  int steps_ = 0;
  std::vector<int> entered_;
  std::vector<double> loss_in_, theta_in_;
};

}  // namespace

std::unique_ptr<StepStrategy> make_variable_projection(const StageContext& ctx) {
  return std::make_unique<VariableProjection>(ctx);
}

}  // namespace stage
}  // namespace gs
