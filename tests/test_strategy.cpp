// The driver's step strategies (strategy.h) used directly through their factory, as a program
// composing its own stages would, each against an independent reference: the linear stage
// against LAPACK's SVD solver on the explicit Jacobian, variable projection against the same
// solver's optimum of the linear parameters at the nonlinear ones it reached.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/solver/var_pro.h"
#include "gpusweep/train/strategy.h"
#include "gpusweep/train/sweep.h"
#include "lsq_reference.h"

namespace gs {
namespace {

TEST(Strategy, EachStageTakesItsKindOfStep) {
  TrainOptions o;
  EXPECT_EQ(step_kind({Block::kD, 1}, o), StepKind::kLinearLeastSquares);
  EXPECT_EQ(step_kind({factor_block(1), 3}, o), StepKind::kLinearLeastSquares);
  EXPECT_EQ(step_kind({Block::kG, 5}, o), StepKind::kDampedNewton);
  EXPECT_EQ(step_kind({Block::kAll, 100}, o), StepKind::kVariableProjection);
  o.variable_projection = false;  // --projection alternate
  EXPECT_EQ(step_kind({Block::kAll, 100}, o), StepKind::kAlternating);
  EXPECT_EQ(step_kind({Block::kG, 5}, o), StepKind::kDampedNewton);
  o.project = false;  // --projection off
  EXPECT_EQ(step_kind({Block::kAll, 100}, o), StepKind::kDampedNewton);
  o.optimizer = Optimizer::kAdam;
  EXPECT_EQ(step_kind({Block::kD, 1}, o), StepKind::kAdam);
  EXPECT_EQ(step_kind({Block::kAll, 100}, o), StepKind::kAdam);
}

// Three networks of every trained 1D arch, loaded into a CPU backend.
struct Fixture {
  Dataset ds = make_target_dataset("invcos2", 600, 0);
  Batch batch;
  CpuBackend be{2};
  std::vector<NetResult> res;
  std::vector<char> stopped_short;
  TrainOptions options;
  Fixture() {
    batch.datasets.push_back(&ds);
    for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu}) {
      const Shape s{a, Act::kRelu, 1, 9};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, 0, th.data());
      batch.add(s, 0, th.data());
    }
    be.load(batch);
    res.assign(batch.size(), NetResult{});
    stopped_short.assign(batch.size(), 0);
  }
  StageContext context() { return StageContext{be, batch, options, res, &stopped_short}; }
  std::vector<double> params(int i) {
    std::vector<double> theta;
    be.read_params(theta);
    const NetDesc& nd = batch.nets[i];
    return std::vector<double>(theta.begin() + nd.offset, theta.begin() + nd.offset + num_params(nd.shape));
  }
};

TEST(Strategy, LinearStageReachesTheSvdOptimum) {
  Fixture f;
  const StageContext ctx = f.context();
  const std::vector<int> nets = {0, 1, 2};
  std::vector<std::vector<double>> before;
  for (int i : nets) before.push_back(f.params(i));
  const std::unique_ptr<StepStrategy> d = make_strategy(StepKind::kLinearLeastSquares, Block::kD, ctx);
  d->enter(nets);
  EXPECT_TRUE(d->step(nets).empty());  // one solve, and the stage is done
  d->leave();
  for (int i : nets) {
    const Shape& s = f.batch.nets[i].shape;
    int b = 0, e = 0;
    stage_range(s, Block::kD, &b, &e);
    std::vector<int> cols;
    for (int q = b; q < e; ++q) cols.push_back(q);
    const std::vector<double> ref = reference_solve(s, before[i], cols, f.ds);
    const std::vector<double> got = f.params(i);
    const double l_ref = train_mse(s, ref.data(), f.ds), l_got = train_mse(s, got.data(), f.ds);
    EXPECT_LE(l_got, l_ref * (1.0 + 1e-9)) << arch_name(s.arch);
    EXPECT_LT(l_got, train_mse(s, before[i].data(), f.ds)) << arch_name(s.arch);
    EXPECT_EQ(f.res[i].status, Status::kConverged) << f.res[i].reason;
    for (int q = 0; q < static_cast<int>(got.size()); ++q)
      if (q < b || q >= e) EXPECT_EQ(got[q], before[i][q]) << arch_name(s.arch) << " parameter " << q;
  }
}

// Variable projection: enter() puts the linear parameters at their least-squares optimum, the
// steps lower the loss by moving the knots, and every kept step leaves the linear parameters at
// their optimum for the nonlinear ones (to 1e-8 of LAPACK's SVD solve on the explicit Jacobian).
TEST(Strategy, VariableProjectionKeepsTheLinearPartAtItsOptimum) {
  Fixture f;
  const StageContext ctx = f.context();
  std::vector<int> active = {0, 1, 2};
  std::vector<double> entry;
  for (int i : active) {
    const std::vector<double> th = f.params(i);
    entry.push_back(train_mse(f.batch.nets[i].shape, th.data(), f.ds));
  }
  const std::unique_ptr<StepStrategy> vp = make_strategy(StepKind::kVariableProjection, Block::kAll, ctx);
  vp->enter(active);
  std::vector<double> start;  // phi at the initial knots: the loss with the linear part solved
  for (int i : active) {
    const std::vector<double> th = f.params(i);
    start.push_back(train_mse(f.batch.nets[i].shape, th.data(), f.ds));
  }
  for (int step = 0; step < 8 && !active.empty(); ++step) {
    const std::vector<int> next = vp->step(active);
    EXPECT_TRUE(std::is_sorted(next.begin(), next.end()));
    for (int i : next) EXPECT_NE(std::find(active.begin(), active.end(), i), active.end());
    active = next;
  }
  vp->leave();
  for (int i = 0; i < f.batch.size(); ++i) {
    const Shape& s = f.batch.nets[i].shape;
    const std::vector<double> th = f.params(i);
    const std::vector<double> opt = reference_solve(s, th, linear_columns(s), f.ds);
    const double l = train_mse(s, th.data(), f.ds), l_opt = train_mse(s, opt.data(), f.ds);
    EXPECT_LE(l, l_opt * (1.0 + 1e-8)) << arch_name(s.arch);
    EXPECT_LT(start[i], 0.1 * entry[i]) << arch_name(s.arch);  // enter() solved the linear part
    EXPECT_LT(l, 0.5 * start[i]) << arch_name(s.arch);         // the steps moved the knots
    EXPECT_GT(f.res[i].newton_steps, 0) << arch_name(s.arch);
  }
}

// One alternating step leaves the last linear block it solves (D, then U, Q, ... in factor
// order) at its least-squares optimum for the other parameters: a damped Newton step on all of
// them does not, from the MASO start's random coefficients.
TEST(Strategy, AlternatingStepEndsWithTheLastLinearBlockAtItsOptimum) {
  Fixture f;
  const StageContext ctx = f.context();
  const std::vector<int> nets = {0, 1, 2};
  const std::unique_ptr<StepStrategy> alt = make_strategy(StepKind::kAlternating, Block::kAll, ctx);
  alt->enter(nets);
  alt->step(nets);
  alt->leave();
  for (int i : nets) {
    const Shape& s = f.batch.nets[i].shape;
    Block last = Block::kD;
    for (int k = 1; k < kMaxFactors; ++k)
      if (has_block(s.arch, factor_block(k))) last = factor_block(k);
    int b = 0, e = 0;
    stage_range(s, last, &b, &e);
    std::vector<int> cols;
    for (int q = b; q < e; ++q) cols.push_back(q);
    const std::vector<double> th = f.params(i);
    const std::vector<double> ref = reference_solve(s, th, cols, f.ds);
    EXPECT_LE(train_mse(s, th.data(), f.ds), train_mse(s, ref.data(), f.ds) * (1.0 + 1e-9))
        << arch_name(s.arch) << " block " << block_name(last);
  }
}

// Variable projection and Adam step the ALL stage only.
TEST(Strategy, FactoryRefusesAStageItsKindCannotStep) {
  Fixture f;
  const StageContext ctx = f.context();
  EXPECT_THROW(make_strategy(StepKind::kVariableProjection, Block::kG, ctx), std::invalid_argument);
  EXPECT_THROW(make_strategy(StepKind::kAdam, Block::kD, ctx), std::invalid_argument);
  EXPECT_NE(make_strategy(StepKind::kAdam, Block::kAll, ctx), nullptr);
}

// train() reports every step of every stage to on_step, in order: a linear stage once (one
// solve), whatever its step count and even when no network has its block (the mlp has no U, Q,
// R or S); the others once per step while a network is left in them.
TEST(Strategy, TheDriverReportsEveryStageInOrder) {
  const Dataset ds = make_target_dataset("invcos2", 400, 0);
  Batch batch;
  batch.datasets.push_back(&ds);
  for (int w : {3, 5}) {
    const Shape s{Arch::kMlp, Act::kRelu, 1, w};
    std::vector<double> th(num_params(s));
    init_params(s, InitKind::kMaso, ds, 0, th.data());
    batch.add(s, 0, th.data());
  }
  CpuBackend be(1);
  be.load(batch);
  TrainOptions o;
  o.schedule = parse_schedule("D*3,U,Q,R,S*2,G*2,ALL*3");
  std::vector<StepInfo> seen;
  o.on_step = [&](const StepInfo& s) { seen.push_back(s); };
  train(be, batch, o);
  ASSERT_GE(seen.size(), 7u);
  for (int k = 0; k < 5; ++k) {  // D (both networks), then U, Q, R, S (none): one report each
    EXPECT_EQ(seen[k].stage, k);
    EXPECT_EQ(seen[k].step, 1);
    EXPECT_EQ(seen[k].active, 0);
    EXPECT_EQ(seen[k].batch, 2);
  }
  std::vector<int> reports(7, 0);
  for (const StepInfo& s : seen) ++reports[s.stage];
  EXPECT_GE(reports[5], 1);  // G, while a network is left in it
  EXPECT_LE(reports[5], 2);
  EXPECT_GE(reports[6], 1);  // ALL
  EXPECT_LE(reports[6], 3);
  for (std::size_t k = 0; k < seen.size(); ++k) {
    EXPECT_EQ(seen[k].stages, 7);
    EXPECT_EQ(seen[k].block, o.schedule[seen[k].stage].block);
    EXPECT_EQ(seen[k].steps, o.schedule[seen[k].stage].steps);
    if (k > 0 && seen[k].stage == seen[k - 1].stage) {
      EXPECT_EQ(seen[k].step, seen[k - 1].step + 1);
      EXPECT_LE(seen[k].active, seen[k - 1].active);
    } else {
      EXPECT_EQ(seen[k].step, 1);
      if (k > 0) EXPECT_GT(seen[k].stage, seen[k - 1].stage);
    }
  }
  EXPECT_EQ(seen.back().stage, 6);
}

}  // namespace
}  // namespace gs
