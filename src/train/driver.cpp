// The driver over a batch: the schedule, one step strategy per stage (strategy.h), and the
// final statuses; backend-agnostic (see driver.h).
#include "gpusweep/train/driver.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/host_solver.h"
#include "gpusweep/train/strategy.h"
#include "stage.h"

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
  std::vector<NetResult> res(n);
  std::vector<char> stopped_short(n, 0);
  // Adam's steps are one stage of their own.
  const std::vector<StageSpec> adam_stages = {{Block::kAll, options.adam.steps}};
  const std::vector<StageSpec>& stages = options.optimizer == Optimizer::kAdam ? adam_stages : options.schedule;
  const StageContext ctx{be, batch, options, res, &stopped_short};
  for (std::size_t s = 0; s < stages.size(); ++s) {
    const StageSpec& spec = stages[s];
    std::vector<int> active;
    for (int i = 0; i < n; ++i) {
      if (res[i].status == Status::kFailed || !has_block(batch.nets[i].shape.arch, spec.block))
        continue;
      res[i].status = Status::kMaxSteps;
      res[i].reason = "step limit of stage " + block_name(spec.block);
      stopped_short[i] = 0;
      active.push_back(i);
    }
    const StepKind kind = step_kind(spec, options);
    const std::unique_ptr<StepStrategy> strategy = make_strategy(kind, spec.block, ctx);
    strategy->enter(active);
    // A linear stage is one solve whatever its step count, reported even when no network
    // entered it; the other stages step while a network is left in them.
    const bool linear = kind == StepKind::kLinearLeastSquares;
    for (int step = 0; step < (linear ? 1 : spec.steps) && (linear || !active.empty()); ++step) {
      active = strategy->step(active);
      if (options.on_step)
        options.on_step({static_cast<int>(s), static_cast<int>(stages.size()), spec.block, step + 1, spec.steps,
                         static_cast<int>(active.size()), n});
    }
    strategy->leave();
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
      stage::mark(res[i], Status::kFailed, "non-finite RMSE");
  }
  return res;
}

}  // namespace gs
