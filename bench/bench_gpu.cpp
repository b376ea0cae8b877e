// GPU against CPU on the same machine: network-Newton-steps per second of a full (ALL-stage)
// Newton step at widths 8, 32, 128 and 200 for each arch on both backends; batched against
// looped cuSOLVER Cholesky at the large sizes; the achieved FP64 rate of assembly and of
// factorization against the card's peak; and the full sweep --widths 1:200 --seeds 32.
//   usage: bench_gpu [points=10000] [peak_fp64_tflops=0 (unknown)] [full_sweep=1]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "gpusweep/data.h"
#include "gpusweep/driver.h"
#include "gpusweep/sweep.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The driver's common path for every network of the batch: assemble the exact ALL-stage
// system, solve it, evaluate the full step, apply it (with length 0, so every repetition does
// the same work), repeated for at least min_seconds.
double newton_steps_per_second(gs::Backend& be, const gs::Batch& batch, double min_seconds) {
  be.load(batch);
  const int n = batch.size();
  std::vector<int> nets(n);
  for (int i = 0; i < n; ++i) nets[i] = i;
  std::vector<double> loss(n), sg(n), gd(n), lam(n, 1.0), alpha(n, 0.0), trials(n);
  std::vector<int> info(n);
  const double one = 1.0;
  int steps = 0;
  const auto t0 = Clock::now();
  do {
    be.assemble(nets, gs::Block::kAll, gs::HessianKind::kExact, loss.data(), sg.data());
    be.solve(nets, lam.data(), false, info.data(), gd.data());
    be.trial_losses(nets, &one, 1, trials.data());
    be.apply_step(nets, alpha.data());
    steps += n;
  } while (since(t0) < min_seconds);
  return steps / since(t0);
}

gs::Batch make_batch(const gs::Dataset& ds, const gs::Shape& s, int count) {
  gs::Batch batch;
  batch.datasets.push_back(&ds);
  std::vector<double> th(gs::num_params(s));
  for (int k = 0; k < count; ++k) {
    gs::init_params(s, gs::InitKind::kMaso, ds, 1000 + k, th.data());
    batch.add(s, 0, th.data());
  }
  return batch;
}

}  // namespace

int main(int argc, char** argv) {
  const int points = argc > 1 ? std::atoi(argv[1]) : 10000;
  const double peak = argc > 2 ? std::atof(argv[2]) : 0.0;
  const bool full = argc > 3 ? std::atoi(argv[3]) != 0 : true;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const gs::Dataset ds = gs::make_target_dataset("invcos2", points, 0);
  gs::CudaBackend gpu{gs::CudaOptions{}};
  std::printf("%s; CPU: %d threads; %d points\n", gpu.describe().c_str(), cores, points);

  std::printf("\nNewton steps (ALL stage, exact Hessian)\n");
  std::printf("%-5s %6s %6s %8s %16s %16s %9s %12s %12s\n", "arch", "width", "P", "batch",
              "CPU steps/s", "GPU steps/s", "GPU/CPU", "asm TFLOP/s", "chol TFLOP/s");
  for (gs::Arch arch : {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu}) {
    for (int w : {8, 32, 128, 200}) {
      const gs::Shape s{arch, gs::Act::kRelu, 1, w};
      const int p = gs::num_params(s);
      // Enough networks to fill the GPU; the CPU runs a smaller batch of the same networks.
      const int gpu_count = std::max(64, std::min(4096, static_cast<int>(4e9 / (8.0 * 2 * p * p + 8.0 * points * 20))));
      gs::CpuBackend cpu(cores);
      const double rc = newton_steps_per_second(cpu, make_batch(ds, s, 2 * cores), 2.0);
      gpu.reset_stats();
      const double rg = newton_steps_per_second(gpu, make_batch(ds, s, gpu_count), 2.0);
      const gs::CudaStats& st = gpu.stats();
      std::printf("%-5s %6d %6d %8d %16.1f %16.1f %9.1f %12.3f %12.3f\n", gs::arch_name(arch), w, p,
                  gpu_count, rc, rg, rg / rc, st.assemble_flops / st.assemble_seconds * 1e-12,
                  st.factor_flops / st.factor_seconds * 1e-12);
    }
  }
  if (peak > 0) std::printf("(card's FP64 peak given: %.1f TFLOP/s)\n", peak);

  std::printf("\nCholesky: cusolverDnDpotrfBatched against one cusolverDnDpotrf per matrix on 4 streams\n");
  std::printf("%6s %8s %16s %16s\n", "P", "batch", "batched s/solve", "looped s/solve");
  for (int w : {64, 128, 200}) {
    const gs::Shape s{gs::Arch::kGqu, gs::Act::kRelu, 1, w};
    const int p = gs::num_params(s);
    const gs::Batch batch = make_batch(ds, s, 256);
    double secs[2];
    for (int mode = 0; mode < 2; ++mode) {
      gs::CudaOptions o;
      o.potrf_loop_min = mode == 0 ? 0 : 1;
      gs::CudaBackend be{o};
      be.load(batch);
      std::vector<int> nets(batch.size());
      for (int i = 0; i < batch.size(); ++i) nets[i] = i;
      std::vector<double> loss(nets.size()), sg(nets.size()), gd(nets.size()), lam(nets.size(), 1.0);
      std::vector<int> info(nets.size());
      be.assemble(nets, gs::Block::kAll, gs::HessianKind::kExact, loss.data(), sg.data());
      be.reset_stats();
      for (int r = 0; r < 5; ++r) be.solve(nets, lam.data(), false, info.data(), gd.data());
      secs[mode] = be.stats().factor_seconds / 5;
    }
    std::printf("%6d %8d %16.4f %16.4f\n", p, batch.size(), secs[0], secs[1]);
  }

  if (full) {
    gs::SweepSpec spec;
    spec.datasets.push_back(gs::make_target_dataset("invcos2", points, 0));
    spec.archs = {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu};
    spec.acts = {gs::Act::kRelu};
    for (int w = 1; w <= 200; ++w) spec.widths.push_back(w);
    spec.seeds = 32;
    spec.train.schedule = gs::parse_schedule("D,U,Q,G,ALL*100");
    const auto jobs = gs::make_jobs(spec);
    gpu.reset_stats();
    const auto t0 = Clock::now();
    const auto res = gs::run_sweep(spec, jobs, gpu);
    const double el = since(t0);
    int conv = 0, failed = 0;
    for (const auto& r : res) conv += r.status == gs::Status::kConverged, failed += r.status == gs::Status::kFailed;
    const gs::CudaStats& st = gpu.stats();
    std::printf("\nfull sweep --widths 1:200 --seeds 32 (%zu networks, %d points): %.1f s; %d converged, %d failed\n",
                jobs.size(), points, el, conv, failed);
    std::printf("  assembly %.1f s at %.3f TFLOP/s, factorization %.1f s at %.3f TFLOP/s (%lld factorizations)\n",
                st.assemble_seconds, st.assemble_flops / st.assemble_seconds * 1e-12, st.factor_seconds,
                st.factor_flops / st.factor_seconds * 1e-12, st.factorizations);
  }
  return 0;
}
