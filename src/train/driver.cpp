// The Newton cascade over a batch; backend-agnostic (see driver.h).
#include "gpusweep/train/driver.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/host_solver.h"
#include "gpusweep/solver/var_pro.h"

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
    case Status::kStalled: return "stalled";
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
  std::vector<double> sgrad;    // scaled gradient / RMSE at the start of the current step
  std::vector<int> fallbacks;   // fallbacks taken in this stage
  std::vector<double> floor;    // rounding_floor at the stage's start (empty: not watched)
  // A network whose last step lowered its loss by less than opt.stationary_ftol: it leaves the
  // stage at the next assembly if it is stationary there (var_pro_step, assemble_and_screen).
  std::vector<char> settled;
  bool var_pro = false;         // the stage takes variable-projection steps
  // Set when a network leaves the stage by a stop test (not its step limit) at a point that
  // may not be stationary; the final status reads it (train).
  std::vector<char>* stopped_short;

  StageState(const Batch& b, const TrainOptions& o, Block blk, bool damp, std::vector<NetResult>& r,
             std::vector<char>* shortstop)
      : batch(b), opt(o), block(blk), damp_values(damp), res(r), lambda(b.size(), o.lambda_init),
        loss0(b.size(), 0.0), gdotp(b.size(), 0.0), sgrad(b.size(), NAN), fallbacks(b.size(), 0),
        settled(b.size(), 0), stopped_short(shortstop) {}
};

void mark(NetResult& r, Status s, const std::string& why) {
  r.status = s;
  r.reason = why;
}

// A network leaves its stage by a stop test. Its status is provisional (train decides the
// final one from its stationarity); the reason says which test.
void stop(StageState& st, int i, const std::string& why) {
  mark(st.res[i], Status::kConverged, why);
  if (st.stopped_short != nullptr) (*st.stopped_short)[i] = 1;
}

// Raises the damping of a network whose candidate step was refused. Returns true when it may
// try again; otherwise the network leaves the stage with a final status.
bool raise_damping(StageState& st, int i, const std::string& why, bool numeric_fault) {
  st.lambda[i] *= 10.0;
  if (st.lambda[i] <= st.opt.lambda_max) return true;
  if (numeric_fault)
    mark(st.res[i], Status::kFailed, why + " at maximum damping");
  else
    stop(st, i, "no decrease at maximum damping");
  return false;
}

// Assemble, then test each network for a non-finite loss or a vanishing gradient.
std::vector<int> assemble_and_screen(Backend& be, StageState& st, const std::vector<int>& active) {
  const std::size_t m = active.size();
  std::vector<double> loss(m), sgrad(m);
  if (st.var_pro) {
    // Variable projection reads no Hessian of a relu network on 1D inputs (var_pro.h), only
    // the Jacobi scale: its assembly is the Gauss-Newton diagonal, whose scaled gradient is
    // the one the final status reads. The other networks need the exact Hessian for their
    // residual curvature.
    std::vector<int> part[2];
    std::vector<std::size_t> at[2];
    for (std::size_t j = 0; j < m; ++j) {
      const int k = relu1d_fast_path(st.batch.nets[active[j]].shape) ? 0 : 1;
      part[k].push_back(active[j]);
      at[k].push_back(j);
    }
    for (int k = 0; k < 2; ++k) {
      if (part[k].empty()) continue;
      std::vector<double> l(part[k].size()), g(part[k].size());
      be.assemble(part[k], st.block, k == 0 ? HessianKind::kDiagonal : st.opt.hessian, l.data(), g.data());
      for (std::size_t q = 0; q < part[k].size(); ++q) {
        loss[at[k][q]] = l[q];
        sgrad[at[k][q]] = g[q];
      }
    }
  } else {
    be.assemble(active, st.block, st.opt.hessian, loss.data(), sgrad.data());
  }
  // Networks near their rounding floor (the stage's estimate, from its start) have it measured
  // again at the present parameters: one there leaves the stage, its gradient being noise.
  std::vector<double> floor(m, 0.0), theta;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = active[j];
    if (st.floor.empty() || !(loss[j] <= st.opt.floor_margin * st.floor[i])) continue;
    if (theta.empty()) be.read_params(theta);
    const NetDesc& nd = st.batch.nets[i];
    floor[j] = rounding_floor(nd.shape, theta.data() + nd.offset, *st.batch.datasets[nd.dataset]);
  }
  std::vector<int> pending;
  for (std::size_t j = 0; j < m; ++j) {
    const int i = active[j];
    st.res[i].newton_steps++;
    const bool settled = st.settled[i];
    st.settled[i] = 0;
    if (!std::isfinite(loss[j]) || !std::isfinite(sgrad[j])) {
      mark(st.res[i], Status::kFailed, "non-finite loss or gradient");
    } else if (loss[j] == 0.0 || sgrad[j] <= st.opt.gtol * std::sqrt(loss[j])) {
      stop(st, i, "gradient below gtol");
    } else if (loss[j] <= floor[j]) {
      stop(st, i, "loss at the rounding floor");
    } else if (settled && sgrad[j] <= st.opt.stationary_tol * std::sqrt(loss[j])) {
      stop(st, i, "loss change below 1e-8");
    } else {
      st.loss0[i] = loss[j];
      st.sgrad[i] = sgrad[j] / std::sqrt(loss[j]);
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
      stop(st, i, "loss change below ftol");
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

void project_linear(Backend& be, const Batch& batch, std::vector<NetResult>& res, std::vector<NetResult>& scratch,
                    const std::vector<int>& active);
std::vector<double> losses(Backend& be, const Batch& batch, const std::vector<int>& nets);

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
  StageState all(batch, st.opt, Block::kAll, false, scratch, nullptr);
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
void project_linear(Backend& be, const Batch& batch, std::vector<NetResult>& res, std::vector<NetResult>& scratch,
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
    least_squares_stage(be, b, scratch, sub);
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

// The blocks a network's schedule trains: ALL alone when the schedule has it (or for Adam),
// else each stage block its arch has.
std::vector<Block> trained_blocks(const Shape& s, const TrainOptions& options) {
  if (options.optimizer == Optimizer::kAdam) return {Block::kAll};
  std::vector<Block> out;
  for (const StageSpec& spec : options.schedule) {
    if (spec.block == Block::kAll) return {Block::kAll};
    if (has_block(s.arch, spec.block) && std::find(out.begin(), out.end(), spec.block) == out.end())
      out.push_back(spec.block);
  }
  return out;
}

// Each network's scaled gradient over the parameters its schedule trains (Gauss-Newton
// diagonal: the largest over the blocks, each assembled alone, is the one over their union),
// then its final status (driver.h): converged where stationary, else stalled where a stage
// stopped it short, else max_steps.
void final_status(Backend& be, const Batch& batch, const TrainOptions& options,
                  const std::vector<char>& stopped_short, std::vector<NetResult>& res) {
  const int n = batch.size();
  std::vector<std::vector<Block>> blocks(n);
  std::vector<Block> every;
  for (int i = 0; i < n; ++i) {
    res[i].scaled_grad = NAN;
    if (res[i].status == Status::kFailed) continue;
    blocks[i] = trained_blocks(batch.nets[i].shape, options);
    for (Block b : blocks[i])
      if (std::find(every.begin(), every.end(), b) == every.end()) every.push_back(b);
  }
  std::vector<double> loss(n, NAN);
  for (Block b : every) {
    std::vector<int> list;
    for (int i = 0; i < n; ++i)
      if (std::find(blocks[i].begin(), blocks[i].end(), b) != blocks[i].end()) list.push_back(i);
    std::vector<double> l(list.size()), sg(list.size());
    be.assemble(list, b, HessianKind::kDiagonal, l.data(), sg.data());
    for (std::size_t j = 0; j < list.size(); ++j) {
      const int i = list[j];
      const double v = l[j] > 0.0 ? sg[j] / std::sqrt(l[j]) : 0.0;
      res[i].scaled_grad = std::isnan(res[i].scaled_grad) ? v : std::fmax(res[i].scaled_grad, v);
      loss[i] = l[j];
    }
  }
  std::vector<double> theta;
  be.read_params(theta);
  for (int i = 0; i < n; ++i) {
    NetResult& r = res[i];
    if (r.status == Status::kFailed || blocks[i].empty()) continue;
    const NetDesc& nd = batch.nets[i];
    const Dataset& ds = *batch.datasets[nd.dataset];
    const bool floor = loss[i] <= rounding_floor(nd.shape, theta.data() + nd.offset, ds);
    bool corner = false;
    const bool all = std::find(blocks[i].begin(), blocks[i].end(), Block::kAll) != blocks[i].end();
    if (!floor && r.scaled_grad > options.stationary_tol && all && relu1d_fast_path(nd.shape)) {
      // A kink on a training point: the least of its one-sided gradients' segment counts
      // (kink_scaled_gradient); a kink within a loss change of ftol of the point is on it.
      const double k = kink_scaled_gradient(nd.shape, theta.data() + nd.offset, ds, options.ftol);
      if (k < r.scaled_grad) {
        r.scaled_grad = k;
        corner = k <= options.stationary_tol;
      }
    }
    if (floor || r.scaled_grad <= options.stationary_tol) {
      if (floor) r.reason = "loss at the rounding floor";
      else if (r.status == Status::kMaxSteps) r.reason = "stationary at the step limit";
      if (corner) r.reason += "; a kink on a training point (one-sided derivatives of opposite signs)";
      r.status = Status::kConverged;
    } else if (stopped_short[i]) {
      r.status = Status::kStalled;
      r.reason += "; not stationary";
    } else {
      r.status = Status::kMaxSteps;
    }
  }
}

}  // namespace

std::vector<NetResult> train(Backend& be, const Batch& batch, const TrainOptions& options) {
  const int n = batch.size();
  std::vector<NetResult> res(n), scratch(n);
  std::vector<char> stopped_short(n, 0);
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
    StageState st(batch, options, spec.block, damp_values, res, &stopped_short);
    std::vector<int> active;
    for (int i = 0; i < n; ++i) {
      if (res[i].status == Status::kFailed || !has_block(batch.nets[i].shape.arch, spec.block))
        continue;
      mark(res[i], Status::kMaxSteps, "step limit of stage " + block_name(spec.block));
      stopped_short[i] = 0;
      active.push_back(i);
    }
    const bool project = spec.block == Block::kAll && options.project;
    const int stage_index = static_cast<int>(&spec - stages.data());
    if (spec.block != Block::kAll && spec.block != Block::kG) {
      // A linear stage: its optimum in one solve, whatever its step count.
      least_squares_stage(be, spec.block, res, active);
      if (options.on_step)
        options.on_step({stage_index, static_cast<int>(options.schedule.size()), spec.block, 1,
                         spec.steps, 0, n});
      continue;
    }
    const bool var_pro = project && options.variable_projection;
    st.var_pro = var_pro;
    std::vector<double> nu(n, 2.0);
    // The networks that enter a variable-projection stage, their loss and their parameters
    // then: a network that leaves it with a higher loss gets them back (below).
    std::vector<int> entered;
    std::vector<double> loss_in, theta_in;
    if (var_pro && !active.empty()) {
      entered = active;
      loss_in = losses(be, batch, active);
      be.read_params(theta_in);
      // Start from the optimal linear parameters for the current nonlinear ones, with the same
      // rule for thin neurons as every trial, so that the trials compare like with like.
      std::fill(st.lambda.begin(), st.lambda.end(), st.opt.var_pro_lambda_init);
      std::vector<double> start(active.size());
      be.var_pro_trial(active, false, start.data());
      be.var_pro_accept(active);
      std::vector<double> theta;
      be.read_params(theta);
      st.floor.assign(n, 0.0);
      for (int i : active) {
        const NetDesc& nd = batch.nets[i];
        st.floor[i] = rounding_floor(nd.shape, theta.data() + nd.offset, *batch.datasets[nd.dataset]);
      }
    }
    for (int step = 0; step < spec.steps && !active.empty(); ++step) {
      if (var_pro) {
        if (step < st.opt.calm_steps)
          for (int i : active) st.lambda[i] = std::max(st.lambda[i], st.opt.calm_lambda);
        active = var_pro_step(be, st, nu, active);
      } else {
        active = newton_step(be, st, active);
      }
      if (project && !var_pro) {
        project_linear(be, batch, res, scratch, active);
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
  final_status(be, batch, options, stopped_short, res);
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
