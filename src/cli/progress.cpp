// The progress line of a running sweep. See progress.h.
#include "cli/progress.h"

#include <cstdio>

namespace gs {

Progress::Progress(bool on, int total, const std::vector<StageSpec>& schedule)
    : on_(on), total_(total), t0_(std::chrono::steady_clock::now()) {
  for (const auto& st : schedule) {
    before_.push_back(all_steps_);
    all_steps_ += st.steps;
  }
}

void Progress::step(const StepInfo& s) {
  if (!on_) return;
  const double el = elapsed();
  if (el - last_ < 0.2 && !(s.stage + 1 == s.stages && s.step == s.steps)) return;
  last_ = el;
  const double stage_frac = (before_[s.stage] + s.step) / all_steps_;
  const double frac = (done_ + s.batch * stage_frac) / total_;
  std::fprintf(stderr, "\rchunk %d/%d  stage %s (%d/%d) step %d/%d  active %d/%d  elapsed %.1f s  eta %s   ",
               chunk_ + 1, chunks_, block_name(s.block).c_str(), s.stage + 1, s.stages, s.step, s.steps,
               s.active, s.batch, el, eta(el, frac).c_str());
}

void Progress::chunk(const SweepProgress& p) {
  done_ = p.nets_done;
  chunk_ = p.chunks_done;
  chunks_ = p.chunks_total;
  if (!on_) return;
  if (p.chunks_done == p.chunks_total) std::fprintf(stderr, "\r%-110s\r", "");
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

std::string Progress::eta(double el, double frac) {
  if (frac <= 0.01) return "?";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f s", el / frac * (1.0 - frac));
  return buf;
}

}  // namespace gs
