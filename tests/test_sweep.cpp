// Whole sweeps on the CPU backend: thread-count independence, a numerically broken network
// contained in its batch, chunk planning, and the L(P) slopes the method exists to measure.
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/analysis/fit.h"
#include "gpusweep/model/data.h"
#include "gpusweep/train/sweep.h"

namespace gs {
namespace {

SweepSpec small_spec(const std::string& schedule, int points) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", points, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu};
  spec.train.schedule = parse_schedule(schedule);
  return spec;
}

TEST(Sweep, BitIdenticalWhateverTheThreadCount) {
  SweepSpec spec = small_spec("D,U,Q,G,ALL*8", 300);
  spec.acts = {Act::kRelu, Act::kSilu};
  spec.widths = {2, 3, 5, 8, 13};
  spec.seeds = 2;
  const auto jobs = make_jobs(spec);
  CpuBackend one(1), two(2), three(3);
  const auto r1 = run_sweep(spec, jobs, one);
  const auto r2 = run_sweep(spec, jobs, two);
  const auto r3 = run_sweep(spec, jobs, three);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    for (const auto* r : {&r2, &r3}) {
      EXPECT_EQ(std::memcmp(&r1[j].train_rmse, &(*r)[j].train_rmse, sizeof(double)), 0) << "job " << j;
      EXPECT_EQ(std::memcmp(&r1[j].test_rmse, &(*r)[j].test_rmse, sizeof(double)), 0) << "job " << j;
      ASSERT_EQ(r1[j].params.size(), (*r)[j].params.size());
      EXPECT_EQ(std::memcmp(r1[j].params.data(), (*r)[j].params.data(), r1[j].params.size() * sizeof(double)), 0)
          << "job " << j;
      EXPECT_EQ(r1[j].newton_steps, (*r)[j].newton_steps);
      EXPECT_EQ(r1[j].status, (*r)[j].status);
    }
  }
}

TEST(Sweep, NonFiniteNetworkFailsAloneAndLeavesItsNeighboursUntouched) {
  SweepSpec spec = small_spec("D,U,G,ALL*6", 400);
  const Dataset& ds = spec.datasets[0];
  auto make_batch = [&](bool plant) {
    Batch batch;
    batch.datasets.push_back(&ds);
    for (int w : {4, 7, 12}) {
      const Shape s{Arch::kGlu, Act::kRelu, 1, w};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, 100 + w, th.data());
      batch.add(s, 0, th.data());
      if (plant && w == 7) {
        th[num_params(s) - 3] = NAN;  // a poisoned D
        batch.add(s, 0, th.data());
      }
    }
    return batch;
  };
  const Batch clean = make_batch(false), planted = make_batch(true);
  CpuBackend be(2);
  be.load(clean);
  const auto rc = train(be, clean, spec.train);
  std::vector<double> pc, pp;
  be.read_params(pc);
  be.load(planted);
  const auto rp = train(be, planted, spec.train);
  be.read_params(pp);
  ASSERT_EQ(rp.size(), 4u);
  EXPECT_EQ(rp[2].status, Status::kFailed);
  EXPECT_NE(rp[2].reason.find("non-finite"), std::string::npos) << rp[2].reason;
  const int map[3] = {0, 1, 3};  // clean index -> planted index
  for (int k = 0; k < 3; ++k) {
    const NetResult& a = rc[k];
    const NetResult& b = rp[map[k]];
    EXPECT_NE(a.status, Status::kFailed);
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.newton_steps, b.newton_steps);
    EXPECT_EQ(std::memcmp(&a.test_rmse, &b.test_rmse, sizeof(double)), 0);
    const auto& na = clean.nets[k];
    const auto& nb = planted.nets[map[k]];
    EXPECT_EQ(std::memcmp(pc.data() + na.offset, pp.data() + nb.offset,
                          num_params(na.shape) * sizeof(double)), 0);
  }
}

TEST(Sweep, ChunksRespectTheBudgetAndCoverEveryJobOnce) {
  SweepSpec spec = small_spec("D", 10);
  spec.widths = {1, 2, 50, 100, 200};
  spec.seeds = 3;
  const auto jobs = make_jobs(spec);
  const std::size_t budget = 40u << 20;
  auto bytes = [](int p) { return static_cast<std::size_t>(p) * p * 8; };
  const auto chunks = plan_chunks(jobs, {1}, budget, bytes);
  std::vector<int> seen(jobs.size(), 0);
  for (const auto& c : chunks) {
    std::size_t used = 0;
    for (int j : c) {
      seen[j]++;
      used += bytes(num_params(Shape{jobs[j].arch, jobs[j].act, 1, jobs[j].width}));
    }
    EXPECT_LE(used, budget);
  }
  for (int s : seen) EXPECT_EQ(s, 1);
  EXPECT_THROW(plan_chunks(jobs, {1}, 1u << 20, bytes), std::invalid_argument);
}

// --restarts: each job's starts train side by side, and the row is the one with the lowest
// training loss. Each start trained alone (its own batch) is the reference. The sweep's
// network-steps (SweepTransfers) are every start's steps, as the starts trained alone count
// them; the CPU backend has no device, so no bytes.
TEST(Sweep, RestartsKeepTheLowestTrainingLoss) {
  SweepSpec spec = small_spec("D,U,Q,G,ALL*30", 800);
  spec.archs = {Arch::kGlu, Arch::kGqu};
  spec.widths = {5, 8};
  spec.restarts = 2;
  const auto jobs = make_jobs(spec);
  CpuBackend be(2);
  SweepTransfers counted;
  const auto results = run_sweep(spec, jobs, be, {}, {}, &counted);
  EXPECT_FALSE(be.host_transfers().has_value());
  EXPECT_FALSE(counted.bytes.has_value());
  long long steps = 0;
  double param_steps = 0.0;
  int restarted = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Job& job = jobs[j];
    const Dataset& ds = spec.datasets[job.target];
    const Shape s{job.arch, job.act, ds.d, job.width};
    double best = INFINITY;
    int which = -1;
    for (int k = 0; k <= spec.restarts; ++k) {
      std::vector<double> th(num_params(s));
      if (k == 0) init_params(s, spec.init, ds, job_seed(job, ds.name), th.data());
      else restart_params(s, spec.init, ds, job_seed(job, ds.name), k, th.data());
      Batch batch;
      batch.datasets.push_back(&ds);
      batch.add(s, 0, th.data());
      CpuBackend alone(1);
      alone.load(batch);
      const NetResult r = train(alone, batch, spec.train)[0];
      steps += r.newton_steps;
      param_steps += static_cast<double>(num_params(s)) * r.newton_steps;
      if (r.train_rmse < best) {
        best = r.train_rmse;
        which = k;
      }
    }
    EXPECT_EQ(results[j].train_rmse, best) << arch_name(job.arch) << " " << job.width;
    EXPECT_EQ(results[j].start, which) << arch_name(job.arch) << " " << job.width;
    restarted += results[j].start > 0;
  }
  EXPECT_GT(restarted, 0) << "no restart ever won: the test would not see a wrong choice";
  EXPECT_GT(steps, 0);
  EXPECT_EQ(counted.network_steps, steps);
  EXPECT_EQ(counted.param_steps, param_steps);
}

// A row's reason agrees with its status: only a stalled row says "not stationary" (at its
// end), and then nothing before that says "stationary".
void expect_reason_agrees(const NetResult& r) {
  const std::string tail = "; not stationary";
  const bool says_not = r.reason.find("not stationary") != std::string::npos;
  EXPECT_EQ(says_not, r.status == Status::kStalled) << status_name(r.status) << ": " << r.reason;
  if (says_not) {
    ASSERT_GE(r.reason.size(), tail.size()) << r.reason;
    EXPECT_EQ(r.reason.substr(r.reason.size() - tail.size()), tail) << r.reason;
    EXPECT_EQ(r.reason.substr(0, r.reason.size() - tail.size()).find("stationary"), std::string::npos) << r.reason;
  }
}

TEST(Sweep, StatusesOfTheLinearSchedule) {
  SweepSpec spec = small_spec("D,U,Q", 500);
  spec.widths = {2, 6, 10};
  const auto jobs = make_jobs(spec);
  CpuBackend be(2);
  // One exact solve per block leaves each at its optimum given the others, not the three at a
  // joint one: converged only where the scaled gradient over D, U and Q says so, else the
  // schedule ran out (max_steps). Never stalled: no stage stopped short.
  for (const auto& r : run_sweep(spec, jobs, be)) {
    EXPECT_TRUE(r.status == Status::kConverged || r.status == Status::kMaxSteps) << r.reason;
    EXPECT_EQ(r.status == Status::kConverged, r.scaled_grad <= spec.train.stationary_tol) << r.reason;
    EXPECT_TRUE(std::isfinite(r.test_rmse));
    expect_reason_agrees(r);
  }
}

// The slopes of the paper, on a small sweep: widths 4..32, 2 seeds, 2000 points. Every fit
// of the test RMSE and of the training RMSE must have r^2 > min_r2.
struct Slopes {
  double mlp, glu, gqu;
};

Slopes sweep_slopes(const std::string& schedule, double min_r2) {
  SweepSpec spec = small_spec(schedule, 2000);
  for (int w = 4; w <= 32; ++w) spec.widths.push_back(w);
  spec.seeds = 2;
  const auto jobs = make_jobs(spec);
  CpuBackend be(0);
  const auto results = run_sweep(spec, jobs, be);
  for (const auto& r : results) {
    EXPECT_NE(r.status, Status::kFailed) << r.reason;
    // Converged means stationary: no such row has a scaled gradient above the tolerance
    // (unless its loss is at the rounding floor, where the gradient is noise).
    if (r.status == Status::kConverged && r.reason != "loss at the rounding floor")
      EXPECT_LE(r.scaled_grad, spec.train.stationary_tol) << r.reason;
    expect_reason_agrees(r);
  }
  const auto fits = fit_groups(spec, jobs, results, 4);
  EXPECT_EQ(fits.size(), 3u);
  Slopes s{};
  for (const auto& f : fits) {
    EXPECT_TRUE(f.ok) << f.note;
    EXPECT_GT(f.vs_width.r2, min_r2) << f.arch;
    (f.arch == "mlp" ? s.mlp : f.arch == "glu" ? s.glu : s.gqu) = f.vs_width.slope;
  }
  std::vector<FitRow> rows = fit_rows(spec, jobs, results);
  for (std::size_t j = 0; j < rows.size(); ++j) rows[j].test_rmse = results[j].train_rmse;
  FitOptions fo;
  fo.min_width = 4;
  for (const auto& f : fit_groups(rows, fo)) {
    EXPECT_TRUE(f.ok) << f.note;
    EXPECT_GT(f.vs_width.r2, min_r2) << f.arch << " (training RMSE)";
  }
  std::printf("schedule %s: slopes vs width mlp %.3f glu %.3f gqu %.3f\n", schedule.c_str(), s.mlp, s.glu, s.gqu);
  return s;
}

TEST(Science, FrozenKnotScheduleGivesSplineSlopes) {
  const Slopes s = sweep_slopes("D,U,Q", 0.9);
  EXPECT_NEAR(s.mlp, -2.0, 0.35);
  EXPECT_NEAR(s.glu, -3.0, 0.45);
  EXPECT_LT(s.gqu, s.mlp - 0.5);
}

TEST(Science, DefaultScheduleSlopes) {
  // Every fit, of the test RMSE as of the training RMSE, is held to r^2: thin neurons at the
  // ends of the data are switched off (var_pro.h), so no test point past the last training
  // point sees a spike. The gqu falls faster than the glu by the margin the paper reports.
  const Slopes s = sweep_slopes("D,U,Q,G,ALL*100", 0.85);
  EXPECT_NEAR(s.mlp, -2.0, 0.35);
  EXPECT_NEAR(s.glu, -3.0, 0.45);
  EXPECT_LT(s.gqu, s.glu - 0.3);
}

// In 2D (sin(4x) sin(4y), random initialization), the glu's error falls faster with width
// than the mlp's, as in the paper's Table 1. Widths 4..16 are pre-asymptotic, so only the
// order and a loose range are asserted (bench/RESULTS.md has the wider sweeps). At these
// widths each seed's network settles in one of many local minima, so four seeds.
TEST(Science, GluScalesFasterThanMlpIn2d) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin_sin", 2000, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu};
  spec.acts = {Act::kRelu};
  spec.widths = {4, 6, 8, 11, 16};
  spec.seeds = 4;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*100");
  const auto jobs = make_jobs(spec);
  CpuBackend be(0);
  const auto results = run_sweep(spec, jobs, be);
  for (const auto& r : results) {
    EXPECT_NE(r.status, Status::kFailed) << r.reason;
    // Converged means stationary: no such row has a scaled gradient above the tolerance
    // (unless its loss is at the rounding floor, where the gradient is noise).
    if (r.status == Status::kConverged && r.reason != "loss at the rounding floor")
      EXPECT_LE(r.scaled_grad, spec.train.stationary_tol) << r.reason;
    expect_reason_agrees(r);
  }
  const auto fits = fit_groups(spec, jobs, results, 4);
  ASSERT_EQ(fits.size(), 2u);
  for (const auto& f : fits) {
    ASSERT_TRUE(f.ok) << f.note;
    EXPECT_GT(f.vs_width.r2, 0.75) << f.arch;
  }
  const double mlp = fits[0].vs_width.slope, glu = fits[1].vs_width.slope;
  std::printf("sin_sin, widths 4..16: slopes vs width mlp %.3f glu %.3f\n", mlp, glu);
  EXPECT_LT(mlp, -0.7);
  EXPECT_GT(mlp, -1.8);
  EXPECT_LT(glu, mlp - 0.25);
}

}  // namespace
}  // namespace gs
