// The solver's tallies (tally.h): installing one leaves training unchanged to the last bit, its
// counters from different places of the solver agree with each other, and the closed-form
// operation counts agree with the count of an explicit Householder loop.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/solver/tally.h"
#include "gpusweep/train/sweep.h"

namespace gs {
namespace {

SweepSpec small_spec() {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 2000, 0));
  spec.archs = parse_archs("mlp,glu,gqu");
  spec.acts = {Act::kRelu};
  spec.widths = {12};
  spec.train.schedule = parse_schedule("D,U,Q,R,S,G,ALL*20");
  return spec;
}

TEST(Tally, LeavesTrainingUnchangedAndCountsEveryStep) {
  const SweepSpec spec = small_spec();
  const auto jobs = make_jobs(spec);
  CpuBackend plain(1);
  const auto a = run_sweep(spec, jobs, plain);
  SolverTally t;
  set_solver_tally(&t);
  CpuBackend counted(1);
  const auto b = run_sweep(spec, jobs, counted);
  set_solver_tally(nullptr);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t j = 0; j < a.size(); ++j) {
    EXPECT_EQ(a[j].newton_steps, b[j].newton_steps) << j;
    EXPECT_EQ(a[j].params, b[j].params) << j;
    EXPECT_EQ(a[j].train_rmse, b[j].train_rmse) << j;
  }
  auto calls = [&](Prim p) { return t.prim[static_cast<int>(p)].calls; };
  // Every reduced system is compressed once, its curvature formed once, and solved first once
  // (the CPU backend keeps it for the damping retries).
  EXPECT_GT(t.systems, 0);
  EXPECT_EQ(calls(Prim::kQr), t.systems);
  EXPECT_EQ(calls(Prim::kCompress), t.systems);
  // The residuals of a system are those of the trial it was accepted from (the CPU backend
  // keeps them), so the system evaluates the network only where none was kept.
  EXPECT_LE(calls(Prim::kResiduals), t.systems);
  EXPECT_EQ(t.first_solves, t.systems);
  // Every system is built at parameters that a kept trial made (the stage's start is one), and
  // starts from that trial's QR of the main linear columns where the two have the same ones
  // (MainQr): at this width, all of them.
  EXPECT_EQ(t.reused_qr, t.systems);
  EXPECT_GE(t.tries, t.first_solves);
  EXPECT_LE(t.indefinite, t.first_solves);
  EXPECT_EQ(calls(Prim::kEigen), t.indefinite + (t.tries - calls(Prim::kCholesky) + t.first_solves));
  // Every trial compresses and solves its linear columns once and evaluates its loss twice.
  EXPECT_EQ(calls(Prim::kTrialCompress), t.trials);
  EXPECT_EQ(calls(Prim::kTrialLs), t.trials);
  EXPECT_EQ(calls(Prim::kTrialLoss), 2 * t.trials);
  // An assembly per ALL step: at least one per system.
  EXPECT_GE(calls(Prim::kAssembly), t.systems);
  EXPECT_LE(t.max_kb, num_params(Shape{Arch::kGqu, Act::kRelu, 1, 12}));
  // Nothing is recorded once the tally is removed.
  const SolverTally copy = t;
  CpuBackend after(1);
  run_sweep(spec, jobs, after);
  EXPECT_EQ(t.systems, copy.systems);
  EXPECT_EQ(t.prim[static_cast<int>(Prim::kTrialLs)].calls, copy.prim[static_cast<int>(Prim::kTrialLs)].calls);
}

// The operations of Householder QR counted step by step: column j's reflector (its norm and
// scaling over m - j entries, about 3 (m - j)) and its application to the n - j - 1 columns on
// its right (a dot product and an update, 4 (m - j) each).
double householder_loop(int m, int n) {
  double f = 0.0;
  for (int j = 0; j < std::min(m, n); ++j) f += 3.0 * (m - j) + 4.0 * (m - j) * (n - j - 1);
  return f;
}

TEST(Tally, ClosedFormCountsMatchTheLoops) {
  for (int m : {50, 400, 800})
    for (int n : {20, 200, 401}) {
      if (n > m) continue;
      const double loop = householder_loop(m, n);
      // The closed form leaves out the terms of order m n.
      EXPECT_NEAR(flops_qr(m, n), loop, 4.0 * m * n + 10.0 * n * n) << m << " x " << n;
      // Applying the k = n reflectors to c columns: 4 (m - j) per column and reflector.
      for (int c : {1, 100}) {
        double apply = 0.0;
        for (int j = 0; j < n; ++j) apply += 4.0 * (m - j) * c;
        EXPECT_NEAR(flops_apply_q(m, c, n), apply, 2.0 * n * c + 1.0) << m << " " << n << " " << c;
      }
    }
  EXPECT_DOUBLE_EQ(flops_potrf(300), 9e6);
  EXPECT_DOUBLE_EQ(flops_syevd(100), 9e6);
}

}  // namespace
}  // namespace gs
