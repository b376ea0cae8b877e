// CPU benchmark: network-Newton-steps per second of a full (ALL-stage) Newton step at widths
// 8, 32 and 128 for each arch, on one thread and on all threads, and the end-to-end time of
// the frozen-knot sweep D,U,Q over widths 1..100 step 3 for all three archs.
//   usage: bench_cpu [points=2000] [threads=all]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/train/sweep.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One full Newton step (assemble exact H, solve, evaluate the full step, apply), the common
// path of the driver, for every network of the batch, repeated until at least min_seconds have passed.
double newton_steps_per_second(gs::Backend& be, const gs::Batch& batch, double min_seconds) {
  be.load(batch);
  const int n = batch.size();
  std::vector<int> nets(n);
  for (int i = 0; i < n; ++i) nets[i] = i;
  std::vector<double> loss(n), sg(n), gd(n), lam(n, 1.0), alpha(n, 0.0), trials(8 * n);
  std::vector<int> info(n);
  const double alphas[8] = {1, 0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2048};
  int steps = 0;
  const auto t0 = Clock::now();
  do {
    be.assemble(nets, gs::Block::kAll, gs::HessianKind::kExact, loss.data(), sg.data());
    be.solve(nets, lam.data(), info.data(), gd.data());
    be.trial_losses(nets, alphas, 1, trials.data());
    be.apply_step(nets, alpha.data());  // alpha 0 keeps the parameters: every rep is the same work
    steps += n;
  } while (since(t0) < min_seconds);
  return steps / since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const int points = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int all = argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  const gs::Dataset ds = gs::make_target_dataset("invcos2", points, 0);
  std::printf("points %d, threads 1 and %d\n", points, all);
  std::printf("%-5s %6s %6s %18s %18s %14s\n", "arch", "width", "P", "steps/s (1 thr)",
              "steps/s (all thr)", "ms/step (1 thr)");
  for (gs::Arch arch : {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu}) {
    for (int w : {8, 32, 128}) {
      const gs::Shape s{arch, gs::Act::kRelu, 1, w};
      gs::Batch batch;
      batch.datasets.push_back(&ds);
      std::vector<double> th(gs::num_params(s));
      for (int k = 0; k < 2 * all; ++k) {
        gs::init_params(s, gs::InitKind::kMaso, ds, 1000 + k, th.data());
        batch.add(s, 0, th.data());
      }
      gs::CpuBackend one(1), many(all);
      const double r1 = newton_steps_per_second(one, batch, 1.0);
      const double rn = newton_steps_per_second(many, batch, 1.0);
      std::printf("%-5s %6d %6d %18.1f %18.1f %14.3f\n", gs::arch_name(arch), w, gs::num_params(s), r1, rn,
                  1e3 / r1);
    }
  }

  gs::SweepSpec spec;
  spec.datasets.push_back(gs::make_target_dataset("invcos2", points, 0));
  spec.archs = {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu};
  spec.acts = {gs::Act::kRelu};
  for (int w = 1; w <= 100; w += 3) spec.widths.push_back(w);
  spec.train.schedule = gs::parse_schedule("D,U,Q");
  const auto jobs = gs::make_jobs(spec);
  gs::CpuBackend be(all);
  const auto t0 = Clock::now();
  gs::run_sweep(spec, jobs, be);
  std::printf("D,U,Q sweep, widths 1:100:3, mlp+glu+gqu (%zu networks), %d threads: %.3f s\n", jobs.size(),
              all, since(t0));
  return 0;
}
