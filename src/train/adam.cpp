// Adam (Kingma and Ba 2015) on all parameters of every network (strategy.h).
#include <cmath>
#include <numeric>
#include <string>

#include "stage.h"

namespace gs {
namespace stage {
namespace {

// options.adam.steps steps with bias-corrected moments; each step is one gradient pass of the
// backend.
class Adam final : public StepStrategy {
 public:
  explicit Adam(const StageContext& ctx) : ctx_(ctx), a_(ctx.options.adam) {
    const int n = ctx.batch.size();
    std::vector<int> every(n);
    std::iota(every.begin(), every.end(), 0);
    off_ = packed_offsets(ctx.batch.nets, every);
    m_.assign(off_[n], 0.0);
    v_.assign(off_[n], 0.0);
    prev_.assign(n, NAN);
  }

  void enter(const std::vector<int>& nets) override {
    for (int i : nets) mark(ctx_.results[i], Status::kMaxSteps, "adam: all " + std::to_string(a_.steps) + " steps");
  }

  std::vector<int> step(const std::vector<int>& active) override {
    const int t = ++t_;
    const std::vector<std::size_t> at = packed_offsets(ctx_.batch.nets, active);
    std::vector<double> loss(active.size(), 0.0), grad(at.back(), 0.0);
    ctx_.backend.gradient(active, loss.data(), grad.data());
    const double c1 = 1.0 - std::pow(a_.beta1, t), c2 = 1.0 - std::pow(a_.beta2, t);
    std::vector<int> next;
    std::vector<double> delta;
    for (std::size_t j = 0; j < active.size(); ++j) {
      const int i = active[j];
      NetResult& r = ctx_.results[i];
      bool finite = std::isfinite(loss[j]);
      for (std::size_t k = at[j]; k < at[j + 1] && finite; ++k) finite = std::isfinite(grad[k]);
      if (!finite) {
        mark(r, Status::kFailed, "adam: non-finite loss or gradient at step " + std::to_string(t));
        continue;
      }
      r.newton_steps = t;
      if (std::isfinite(prev_[i]) && prev_[i] > 0.0) r.rel_decrease = (prev_[i] - loss[j]) / prev_[i];
      prev_[i] = loss[j];
      for (std::size_t k = at[j], q = off_[i]; k < at[j + 1]; ++k, ++q) {
        m_[q] = a_.beta1 * m_[q] + (1.0 - a_.beta1) * grad[k];
        v_[q] = a_.beta2 * v_[q] + (1.0 - a_.beta2) * grad[k] * grad[k];
        delta.push_back(-a_.lr * (m_[q] / c1) / (std::sqrt(v_[q] / c2) + a_.eps));
      }
      next.push_back(i);
    }
    ctx_.backend.add_params(next, delta.data());
    return next;
  }

  void leave() override {}

 private:
  const StageContext ctx_;
  const AdamOptions& a_;
  int t_ = 0;
  std::vector<std::size_t> off_;  // each network's first moment entry
  std::vector<double> m_, v_, prev_;
};

}  // namespace

std::unique_ptr<StepStrategy> make_adam(const StageContext& ctx) { return std::make_unique<Adam>(ctx); }

}  // namespace stage
}  // namespace gs
