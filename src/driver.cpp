// The Newton cascade over a batch; backend-agnostic (see driver.h).
#include "gpusweep/driver.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace gs {

std::string block_name(Block b) {
  if (b == Block::kD) return "D";
  if (b == Block::kAll) return "ALL";
  if (is_factor_block(b)) return kFactorNames[static_cast<int>(b)];
  return "?";
}

std::string stage_names() {
  std::string names = "D";
  for (int b = 1; b < kMaxFactors; ++b) names += std::string(", ") + kFactorNames[b];
  return names + ", G, ALL";
}

const char* status_name(Status s) {
  switch (s) {
    case Status::kConverged: return "converged";
    case Status::kMaxSteps: return "max_steps";
    case Status::kFailed: return "failed";
  }
  return "?";
}

std::vector<StageSpec> parse_schedule(const std::string& text) {
  std::vector<StageSpec> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    const std::size_t star = item.find('*');
    const std::string name = item.substr(0, star);
    StageSpec st{Block::kAll, 1};
    bool known = false;
    for (int k = 0; k <= static_cast<int>(Block::kAll) && !known; ++k)
      if (name == block_name(static_cast<Block>(k))) {
        st.block = static_cast<Block>(k);
        known = true;
      }
    if (!known)
      throw std::invalid_argument("--schedule: unknown stage '" + item + "' (stages are " + stage_names() +
                                  ", each optionally *steps)");
    if (star != std::string::npos) {
      const std::string count = item.substr(star + 1);
      std::size_t used = 0;
      long steps = -1;
      try {
        steps = std::stol(count, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != count.size() || count.empty() || steps < 1 || steps > 1000000)
        throw std::invalid_argument("--schedule: bad step count in '" + item +
                                    "' (want a whole number from 1 to 1000000)");
      st.steps = static_cast<int>(steps);
    }
    out.push_back(st);
  }
  return out;
}

namespace {

// Trial step lengths of the backtracking line search, evaluated together in one pass.
constexpr double kAlphas[] = {1.0, 0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2048};
constexpr int kNumAlphas = sizeof(kAlphas) / sizeof(kAlphas[0]);

struct StageState {
  const Batch& batch;
  const TrainOptions& opt;
  Block block;
  bool damp_values;  // solve for minimum-norm values (the linear stages of the schedule)
  std::vector<NetResult>& res;
  std::vector<double> lambda;   // per network of the batch
  std::vector<double> loss0;    // loss at the start of the current step
  std::vector<double> gdotp;    // g . step of the current candidate
};

// Damping of the variable-projection steps: Levenberg-Marquardt on the reduced system (unit
// diagonal), updated from the gain ratio as Nielsen does.
constexpr double kVarProLambdaInit = 1e-3;

void mark(NetResult& r, Status s, const std::string& why) {
  r.status = s;
  r.reason = why;
}

// Raises the damping of a network whose candidate step was refused. Returns true when it may
// try again; otherwise the network leaves the stage with a final status.
bool raise_damping(StageState& st, int i, const std::string& why, bool numeric_fault) {
  st.lambda[i] *= 10.0;
  if (st.lambda[i] <= st.opt.lambda_max) return true;
  if (numeric_fault)
    mark(st.res[i], Status::kFailed, why + " at maximum damping");
  else
    mark(st.res[i], Status::kConverged, "no decrease at maximum damping");
  return false;
}

// Assemble, then test each network for a non-finite loss or a vanishing gradient.
std::vector<int> assemble_and_screen(Backend& be, StageState& st, const std::vector<int>& active) {
  const std::size_t m = active.size();
  std::vector<double> loss(m), sgrad(m);
  be.assemble(active, st.block, st.opt.hessian, loss.data(), sgrad.data());
  std::vector<int> pending;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = active[j];
    st.res[i].newton_steps++;
    if (!std::isfinite(loss[j]) || !std::isfinite(sgrad[j])) {
      mark(st.res[i], Status::kFailed, "non-finite loss or gradient");
    } else if (loss[j] == 0.0 || sgrad[j] <= st.opt.gtol * std::sqrt(loss[j])) {
      mark(st.res[i], Status::kConverged, "gradient below gtol");
    } else {
      st.loss0[i] = loss[j];
      pending.push_back(i);
    }
  }
  return pending;
}

// Factorize and choose a step for each pending network; returns those with a descent step,
// and puts the ones to retry with more damping into retry.
std::vector<int> choose_steps(Backend& be, StageState& st, const std::vector<int>& pending,
                              std::vector<int>& retry) {
  const std::size_t m = pending.size();
  std::vector<double> lam(m), gd(m);
  std::vector<int> info(m);
  for (std::size_t j = 0; j < m; ++j) lam[j] = st.lambda[pending[j]];
  be.solve(pending, lam.data(), st.damp_values, info.data(), gd.data());
  std::vector<int> ready;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = pending[j];
    if (info[j] == 0 && std::isfinite(gd[j]) && gd[j] < 0.0) {
      st.gdotp[i] = gd[j];
      ready.push_back(i);
    } else if (info[j] > 0) {
      if (raise_damping(st, i, "not positive definite", true)) retry.push_back(i);
    } else if (!std::isfinite(gd[j])) {
      if (raise_damping(st, i, "non-finite step", true)) retry.push_back(i);
    } else if (raise_damping(st, i, "no descent direction", false)) {
      retry.push_back(i);
    }
  }
  return ready;
}

// Armijo backtracking over all trial lengths at once; accepted steps are applied. Networks
// that leave the stage (converged) are dropped; the rest go to keep or retry.
void line_search_and_accept(Backend& be, StageState& st, const std::vector<int>& ready,
                            std::vector<int>& keep, std::vector<int>& retry) {
  if (ready.empty()) return;
  // The full step is tried alone first; it is taken most of the time. Only the networks
  // that refuse it evaluate the shorter steps, all of them in one pass.
  const std::size_t m = ready.size();
  std::vector<double> trial(m * kNumAlphas, NAN), first(m);
  be.trial_losses(ready, kAlphas, 1, first.data());
  std::vector<int> backtrack;
  std::vector<std::size_t> backtrack_pos;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = ready[j];
    trial[j * kNumAlphas] = first[j];
    if (!(std::isfinite(first[j]) && first[j] <= st.loss0[i] + st.opt.armijo * st.gdotp[i])) {
      backtrack.push_back(i);
      backtrack_pos.push_back(j);
    }
  }
  if (!backtrack.empty()) {
    std::vector<double> rest(backtrack.size() * (kNumAlphas - 1));
    be.trial_losses(backtrack, kAlphas + 1, kNumAlphas - 1, rest.data());
    for (std::size_t q = 0; q < backtrack.size(); ++q)
      for (int t = 1; t < kNumAlphas; ++t)
        trial[backtrack_pos[q] * kNumAlphas + t] = rest[q * (kNumAlphas - 1) + t - 1];
  }
  std::vector<int> accepted;
  std::vector<double> alpha;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = ready[j];
    int t = 0;
    for (; t < kNumAlphas; ++t) {
      const double lt = trial[j * kNumAlphas + t];
      if (std::isfinite(lt) && lt <= st.loss0[i] + st.opt.armijo * kAlphas[t] * st.gdotp[i]) break;
    }
    if (t == kNumAlphas) {
      if (raise_damping(st, i, "no decrease", false)) retry.push_back(i);
      continue;
    }
    accepted.push_back(i);
    alpha.push_back(kAlphas[t]);
    const double lam_used = st.lambda[i];
    const double new_loss = trial[j * kNumAlphas + t];
    if (t == 0)
      st.lambda[i] = std::max(st.lambda[i] / 10.0, st.opt.lambda_min);
    else if (kAlphas[t] < 0.25)
      st.lambda[i] = std::min(st.lambda[i] * 10.0, st.opt.lambda_max);
    const Shape& s = st.batch.nets[i].shape;
    st.res[i].rel_decrease = (st.loss0[i] - new_loss) / st.loss0[i];
    if (t == 0 && stage_is_linear(s.arch, st.block) && lam_used <= 1e-6) {
      mark(st.res[i], Status::kConverged, "exact least-squares solve");
    } else if (st.loss0[i] - new_loss <= st.opt.ftol * st.loss0[i]) {
      mark(st.res[i], Status::kConverged, "loss change below ftol");
    } else {
      keep.push_back(i);
    }
  }
  if (!accepted.empty()) be.apply_step(accepted, alpha.data());
}

// One Newton step of the stage for every active network; returns those still active.
std::vector<int> newton_step(Backend& be, StageState& st, const std::vector<int>& active) {
  std::vector<int> keep;
  std::vector<int> pending = assemble_and_screen(be, st, active);
  while (!pending.empty()) {
    std::vector<int> retry;
    const std::vector<int> ready = choose_steps(be, st, pending, retry);
    line_search_and_accept(be, st, ready, keep, retry);
    std::sort(retry.begin(), retry.end());
    pending.swap(retry);
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}

// One variable-projection step (var_pro.h) for every active network of the ALL stage; returns
// those still active. A trial is kept when it lowers the loss; the damping follows the ratio of
// the actual to the predicted decrease (Nielsen), and grows until a trial is kept.
std::vector<int> var_pro_step(Backend& be, StageState& st, std::vector<double>& nu,
                              const std::vector<int>& active) {
  std::vector<int> keep;
  std::vector<int> pending = assemble_and_screen(be, st, active);
  while (!pending.empty()) {
    const std::size_t m = pending.size();
    std::vector<double> lam(m), pred(m);
    std::vector<int> info(m);
    for (std::size_t j = 0; j < m; ++j) lam[j] = st.lambda[pending[j]];
    be.var_pro_solve(pending, lam.data(), info.data(), pred.data());
    std::vector<int> ready, retry;
    std::vector<double> ready_pred;
    auto refuse = [&](int i, const std::string& why, bool fault) {
      st.lambda[i] *= nu[i];
      nu[i] *= 2.0;
      if (st.lambda[i] <= st.opt.lambda_max) {
        retry.push_back(i);
      } else {
        mark(st.res[i], fault ? Status::kFailed : Status::kConverged,
             why + " at maximum damping");
      }
    };
    for (std::size_t j = 0; j < m; ++j) {
      const int i = pending[j];
      if (info[j] > 0) {
        refuse(i, "not positive definite", true);
      } else if (!std::isfinite(pred[j])) {
        refuse(i, "non-finite step", true);
      } else if (pred[j] <= 0.0) {
        mark(st.res[i], Status::kConverged, "reduced gradient zero");
      } else {
        ready.push_back(i);
        ready_pred.push_back(pred[j]);
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
        const double rho = drop / ready_pred[j];
        const double c = 2.0 * rho - 1.0;
        st.lambda[i] = std::max(st.lambda[i] * std::max(1.0 / 3.0, 1.0 - c * c * c), st.opt.lambda_min);
        nu[i] = 2.0;
        st.res[i].rel_decrease = drop / st.loss0[i];
        if (drop <= st.opt.ftol * st.loss0[i])
          mark(st.res[i], Status::kConverged, "loss change below ftol");
        else
          keep.push_back(i);
      }
      if (!accepted.empty()) be.var_pro_accept(accepted);
    }
    std::sort(retry.begin(), retry.end());
    pending.swap(retry);
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}

// The linear stage `block` of every listed network solved to its least-squares optimum in one
// rank-revealing solve (Backend::least_squares). The solution is kept unless it would raise
// the training loss, which only rounding at an optimum already reached can do.
void least_squares_stage(Backend& be, Block block, std::vector<NetResult>& res,
                         const std::vector<int>& nets) {
  const std::size_t m = nets.size();
  if (m == 0) return;
  std::vector<int> rank(m);
  std::vector<double> before(m), after(m);
  be.least_squares(nets, block, rank.data(), before.data());
  const double one = 1.0;
  be.trial_losses(nets, &one, 1, after.data());
  std::vector<int> accepted;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = nets[j];
    res[i].newton_steps++;
    if (!std::isfinite(after[j])) {
      mark(res[i], Status::kFailed, "non-finite least-squares solution");
    } else if (after[j] <= before[j]) {
      accepted.push_back(i);
      res[i].rel_decrease = before[j] > 0.0 ? (before[j] - after[j]) / before[j] : 0.0;
      mark(res[i], Status::kConverged, "least-squares solve (rank " + std::to_string(rank[j]) + ")");
    } else {
      res[i].rel_decrease = 0.0;
      mark(res[i], Status::kConverged, "least-squares optimum already reached");
    }
  }
  const std::vector<double> ones(accepted.size(), 1.0);
  if (!accepted.empty()) be.apply_step(accepted, ones.data());
}

// Alternating projection after a step of the ALL stage: one exact least-squares solve of each
// linear block (D, then U, Q, ... in factor order) with the others held, so the next ALL step starts from the optimal
// linear coefficients for the current knots. The sub-steps' own statuses are scratch; only a
// numerical failure is carried over to the network.
void project_linear(Backend& be, const Batch& batch, const TrainOptions& opt,
                    std::vector<NetResult>& res, std::vector<NetResult>& scratch,
                    const std::vector<int>& active) {
  for (int k = 0; k < kMaxFactors; ++k) {
    const Block b = k == 0 ? Block::kD : factor_block(k);  // D, then U, Q, R, ...
    std::vector<int> sub;
    for (int i : active)
      if (has_block(batch.nets[i].shape.arch, b) && res[i].status != Status::kFailed) {
        scratch[i] = NetResult{};
        sub.push_back(i);
      }
    if (sub.empty()) continue;
    if (be.has_least_squares()) {
      least_squares_stage(be, b, scratch, sub);
    } else {
      const int n = batch.size();
      StageState st{batch, opt, b, false, scratch, std::vector<double>(n, opt.lambda_init),
                    std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
      newton_step(be, st, sub);
    }
    for (int i : sub) {
      res[i].newton_steps += scratch[i].newton_steps;
      if (scratch[i].status == Status::kFailed)
        mark(res[i], Status::kFailed, scratch[i].reason + " (stage " + block_name(b) + ")");
    }
  }
}

// The training loss of each listed network, from the backend's gradient pass (no Hessian).
std::vector<double> losses(Backend& be, const Batch& batch, const std::vector<int>& nets) {
  std::vector<double> loss(nets.size()), grad(packed_offsets(batch.nets, nets).back());
  be.gradient(nets, loss.data(), grad.data());
  return loss;
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

// Adam on all parameters of every network, options.adam.steps steps with bias-corrected
// moments; each step is one gradient pass of the backend.
void adam(Backend& be, const Batch& batch, const TrainOptions& options, std::vector<NetResult>& res) {
  if (!be.has_gradient()) throw std::logic_error("adam: the backend has no gradient pass");
  const AdamOptions& a = options.adam;
  const int n = batch.size();
  std::vector<int> active;
  for (int i = 0; i < n; ++i) {
    mark(res[i], Status::kMaxSteps, "adam: all " + std::to_string(a.steps) + " steps");
    active.push_back(i);
  }
  const std::vector<std::size_t> off = packed_offsets(batch.nets, active);  // of every network
  std::vector<double> m(off[n], 0.0), v(off[n], 0.0), prev(n, NAN);
  std::vector<double> loss, grad;
  for (int t = 1; t <= a.steps && !active.empty(); ++t) {
    const std::vector<std::size_t> at = packed_offsets(batch.nets, active);
    loss.assign(active.size(), 0.0);
    grad.assign(at.back(), 0.0);
    be.gradient(active, loss.data(), grad.data());
    const double c1 = 1.0 - std::pow(a.beta1, t), c2 = 1.0 - std::pow(a.beta2, t);
    std::vector<int> next;
    std::vector<double> delta;
    for (std::size_t j = 0; j < active.size(); ++j) {
      const int i = active[j];
      bool finite = std::isfinite(loss[j]);
      for (std::size_t k = at[j]; k < at[j + 1] && finite; ++k) finite = std::isfinite(grad[k]);
      if (!finite) {
        mark(res[i], Status::kFailed, "adam: non-finite loss or gradient at step " + std::to_string(t));
        continue;
      }
      res[i].newton_steps = t;
      if (std::isfinite(prev[i]) && prev[i] > 0.0) res[i].rel_decrease = (prev[i] - loss[j]) / prev[i];
      prev[i] = loss[j];
      for (std::size_t k = at[j], q = off[i]; k < at[j + 1]; ++k, ++q) {
        m[q] = a.beta1 * m[q] + (1.0 - a.beta1) * grad[k];
        v[q] = a.beta2 * v[q] + (1.0 - a.beta2) * grad[k] * grad[k];
        delta.push_back(-a.lr * (m[q] / c1) / (std::sqrt(v[q] / c2) + a.eps));
      }
      next.push_back(i);
    }
    be.add_params(next, delta.data());
    active = next;
    if (options.on_step) options.on_step({0, 1, Block::kAll, t, a.steps, static_cast<int>(active.size()), n});
  }
}

}  // namespace

std::vector<NetResult> train(Backend& be, const Batch& batch, const TrainOptions& options) {
  const int n = batch.size();
  std::vector<NetResult> res(n), scratch(n);
  if (options.optimizer == Optimizer::kAdam) adam(be, batch, options, res);
  const std::vector<StageSpec> none;
  const std::vector<StageSpec>& stages = options.optimizer == Optimizer::kAdam ? none : options.schedule;
  for (const StageSpec& spec : stages) {
    // The linear stages of the schedule start from random coefficients; their systems are
    // rank-deficient (MASO's first and last neurons span the same functions as d0 on the
    // data), and a minimum-norm step would carry those random components along, as large
    // cancelling coefficients that the knot steps then turn into spikes where no training
    // point sits (the ends of the domain). The projection inside ALL keeps step damping.
    const bool damp_values = options.min_norm_linear && spec.block != Block::kAll &&
                             spec.block != Block::kG;
    StageState st{batch, options, spec.block, damp_values, res,
                  std::vector<double>(n, options.lambda_init), std::vector<double>(n, 0.0),
                  std::vector<double>(n, 0.0)};
    std::vector<int> active;
    for (int i = 0; i < n; ++i) {
      if (res[i].status == Status::kFailed || !has_block(batch.nets[i].shape.arch, spec.block))
        continue;
      mark(res[i], Status::kMaxSteps, "step limit of stage " + block_name(spec.block));
      active.push_back(i);
    }
    const bool project = spec.block == Block::kAll && options.project;
    const int stage_index = static_cast<int>(&spec - stages.data());
    if (spec.block != Block::kAll && spec.block != Block::kG && be.has_least_squares()) {
      // A linear stage: its optimum in one solve, whatever its step count.
      least_squares_stage(be, spec.block, res, active);
      if (options.on_step)
        options.on_step({stage_index, static_cast<int>(options.schedule.size()), spec.block, 1,
                         spec.steps, 0, n});
      continue;
    }
    const bool var_pro = project && options.variable_projection && be.has_variable_projection();
    std::vector<double> nu(n, 2.0);
    // The networks that enter a variable-projection stage, their loss and their parameters
    // then: a network that leaves it with a higher loss gets them back (below).
    std::vector<int> entered;
    std::vector<double> loss_in, theta_in;
    if (var_pro && !active.empty()) {
      if (be.has_gradient()) {
        entered = active;
        loss_in = losses(be, batch, active);
        be.read_params(theta_in);
      }
      // Start from the optimal linear parameters for the current nonlinear ones, with the same
      // rule for thin neurons as every trial, so that the trials compare like with like.
      std::fill(st.lambda.begin(), st.lambda.end(), kVarProLambdaInit);
      std::vector<double> start(active.size());
      be.var_pro_trial(active, false, start.data());
      be.var_pro_accept(active);
    }
    for (int step = 0; step < spec.steps && !active.empty(); ++step) {
      if (var_pro) {
        active = var_pro_step(be, st, nu, active);
      } else {
        active = newton_step(be, st, active);
      }
      if (project && !var_pro) {
        project_linear(be, batch, options, res, scratch, active);
        active.erase(std::remove_if(active.begin(), active.end(),
                                    [&](int i) { return res[i].status == Status::kFailed; }),
                     active.end());
      }
      if (options.on_step)
        options.on_step({stage_index, static_cast<int>(options.schedule.size()), spec.block, step + 1,
                         spec.steps, static_cast<int>(active.size()), n});
    }
    if (!entered.empty()) keep_the_better(be, batch, entered, loss_in, theta_in, res);
  }
  // How far from an optimum each network stopped: its scaled gradient over all parameters.
  std::vector<int> live;
  for (int i = 0; i < n; ++i)
    if (res[i].status != Status::kFailed) live.push_back(i);
  if (!live.empty()) {
    std::vector<double> loss(live.size()), sgrad(live.size());
    be.assemble(live, Block::kAll, HessianKind::kGaussNewton, loss.data(), sgrad.data());
    for (std::size_t j = 0; j < live.size(); ++j)
      res[live[j]].scaled_grad = loss[j] > 0.0 ? sgrad[j] / std::sqrt(loss[j]) : 0.0;
  }
  std::vector<double> train(n), test(n), secs(n);
  be.rmse(train.data(), test.data());
  be.network_seconds(secs.data());
  for (int i = 0; i < n; ++i) {
    res[i].train_rmse = train[i];
    res[i].test_rmse = test[i];
    res[i].seconds = secs[i];
    if (res[i].status != Status::kFailed && !(std::isfinite(train[i]) && std::isfinite(test[i])))
      mark(res[i], Status::kFailed, "non-finite RMSE");
  }
  return res;
}

}  // namespace gs
