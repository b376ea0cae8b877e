// Tallies of the solver's work by primitive (tally.h).
#include "gpusweep/solver/tally.h"

#include <time.h>

#include <atomic>
#include <mutex>

namespace gs {
namespace {

std::atomic<SolverTally*> g_tally{nullptr};
std::mutex g_mutex;
thread_local TallyPhase t_phase = TallyPhase::kNone;

}  // namespace

const char* prim_name(Prim p) {
  switch (p) {
    case Prim::kResiduals: return "residuals";
    case Prim::kAssembly: return "assembly";
    case Prim::kCompress: return "compress";
    case Prim::kCurvature: return "curvature";
    case Prim::kQr: return "qr";
    case Prim::kReduced: return "reduced";
    case Prim::kCholesky: return "cholesky";
    case Prim::kEigen: return "eigen";
    case Prim::kTrialCompress: return "trial_compress";
    case Prim::kTrialLs: return "trial_ls";
    case Prim::kTrialLoss: return "trial_loss";
    case Prim::kOther: return "other";
    case Prim::kCount: break;
  }
  return "?";
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void set_solver_tally(SolverTally* t) { g_tally.store(t); }
SolverTally* solver_tally() { return g_tally.load(std::memory_order_relaxed); }

void tally_add(Prim p, double flops, double target_flops, double seconds) {
  SolverTally* t = solver_tally();
  if (t == nullptr) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  PrimTally& q = t->prim[static_cast<int>(p)];
  ++q.calls;
  q.flops += flops;
  q.target_flops += target_flops;
  q.seconds += seconds;
}

double flops_qr(double m, double n) {
  if (m <= 0.0 || n <= 0.0) return 0.0;
  return m >= n ? 2.0 * m * n * n - 2.0 * n * n * n / 3.0 : 2.0 * n * m * m - 2.0 * m * m * m / 3.0;
}
double flops_apply_q(double m, double n, double k) {
  if (m <= 0.0 || n <= 0.0 || k <= 0.0) return 0.0;
  return 4.0 * m * n * k - 2.0 * n * k * k;
}
double flops_potrf(double n) { return n * n * n / 3.0; }
double flops_syevd(double n) { return 9.0 * n * n * n; }
double flops_tridiagonal_eigen(double n) { return flops_syevd(n) - 2.0 * n * n * n; }
double flops_gelsd(double m, double n) {
  if (m <= 0.0 || n <= 0.0) return 0.0;
  if (m < n) return 2.0 * n * m * m + 11.0 * m * m * m;
  return 2.0 * m * n * n + 11.0 * n * n * n;
}

TallyPhase tally_phase() { return t_phase; }
TallyPhaseScope::TallyPhaseScope(TallyPhase p) : prev_(t_phase) { t_phase = p; }
TallyPhaseScope::~TallyPhaseScope() { t_phase = prev_; }

namespace detail {
void tally_lock() { g_mutex.lock(); }
void tally_unlock() { g_mutex.unlock(); }
}  // namespace detail

}  // namespace gs
