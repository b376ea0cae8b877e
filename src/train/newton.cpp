// Damped Newton, the alternating method and the linear stage (strategy.h, stage.h).
#include <algorithm>
#include <cmath>
#include <string>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/host_solver.h"
#include "stage.h"

namespace gs {
namespace stage {

namespace {

// Trial step lengths of the backtracking line search, evaluated together in one pass.
constexpr double kAlphas[] = {1.0, 0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2048};
constexpr int kNumAlphas = sizeof(kAlphas) / sizeof(kAlphas[0]);

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

// Factorize and choose a step for each pending network; returns those with a descent step,
// and puts the ones to retry with more damping into retry.
std::vector<int> choose_steps(Backend& be, StageState& st, const std::vector<int>& pending,
                              std::vector<int>& retry) {
  const std::size_t m = pending.size();
  std::vector<double> lam(m), gd(m);
  std::vector<int> info(m);
  for (std::size_t j = 0; j < m; ++j) lam[j] = st.lambda[pending[j]];
  be.solve(pending, lam.data(), info.data(), gd.data());
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

}  // namespace

void mark(NetResult& r, Status s, const std::string& why) {
  r.status = s;
  r.reason = why;
}

void stop(StageState& st, int i, const std::string& why) {
  mark(st.res[i], Status::kConverged, why);
  if (st.stopped_short != nullptr) (*st.stopped_short)[i] = 1;
}

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

std::vector<double> losses(Backend& be, const Batch& batch, const std::vector<int>& nets) {
  std::vector<double> loss(nets.size()), grad(packed_offsets(batch.nets, nets).back());
  be.gradient(nets, loss.data(), grad.data());
  return loss;
}

namespace {

class LinearLeastSquares final : public StepStrategy {
 public:
  LinearLeastSquares(Block block, const StageContext& ctx) : block_(block), ctx_(ctx) {}
  void enter(const std::vector<int>&) override {}
  // The optimum in one solve: every network leaves the stage after it.
  std::vector<int> step(const std::vector<int>& active) override {
    least_squares_stage(ctx_.backend, block_, ctx_.results, active);
    return {};
  }
  void leave() override {}

 private:
  Block block_;
  const StageContext ctx_;
};

// Damped Newton on the stage's parameters; with `alternating`, each step is followed by the
// exact solve of each linear block of the networks still in the stage.
class DampedNewton final : public StepStrategy {
 public:
  DampedNewton(Block block, bool alternating, const StageContext& ctx)
      : alternating_(alternating), ctx_(ctx),
        st_(ctx.batch, ctx.options, block, ctx.results, ctx.stopped_short),
        scratch_(alternating ? ctx.batch.size() : 0) {}
  void enter(const std::vector<int>&) override {}
  std::vector<int> step(const std::vector<int>& active) override {
    std::vector<int> keep = newton_step(ctx_.backend, st_, active);
    if (alternating_) {
      project_linear(ctx_.backend, ctx_.batch, ctx_.results, scratch_, keep);
      keep.erase(std::remove_if(keep.begin(), keep.end(),
                                [&](int i) { return ctx_.results[i].status == Status::kFailed; }),
                 keep.end());
    }
    return keep;
  }
  void leave() override {}

 private:
  bool alternating_;
  const StageContext ctx_;
  StageState st_;
  std::vector<NetResult> scratch_;
};

}  // namespace

std::unique_ptr<StepStrategy> make_linear_least_squares(Block block, const StageContext& ctx) {
  return std::make_unique<LinearLeastSquares>(block, ctx);
}

std::unique_ptr<StepStrategy> make_damped_newton(Block block, bool alternating, const StageContext& ctx) {
  return std::make_unique<DampedNewton>(block, alternating, ctx);
}

}  // namespace stage
}  // namespace gs
