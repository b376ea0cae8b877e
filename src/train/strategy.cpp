// The one factory of the driver's step strategies (strategy.h).
#include "gpusweep/train/strategy.h"

#include <stdexcept>
#include <string>

#include "stage.h"

namespace gs {

const char* step_kind_name(StepKind kind) {
  switch (kind) {
    case StepKind::kLinearLeastSquares: return "linear least squares";
    case StepKind::kDampedNewton: return "damped Newton";
    case StepKind::kAlternating: return "alternating";
    case StepKind::kVariableProjection: return "variable projection";
    case StepKind::kAdam: return "adam";
  }
  return "?";
}

StepKind step_kind(const StageSpec& spec, const TrainOptions& options) {
  if (options.optimizer == Optimizer::kAdam) return StepKind::kAdam;
  if (spec.block != Block::kAll && spec.block != Block::kG) return StepKind::kLinearLeastSquares;
  if (spec.block == Block::kAll && options.project)
    return options.variable_projection ? StepKind::kVariableProjection : StepKind::kAlternating;
  return StepKind::kDampedNewton;
}

std::unique_ptr<StepStrategy> make_strategy(StepKind kind, Block block, const StageContext& ctx) {
  if ((kind == StepKind::kVariableProjection || kind == StepKind::kAdam) && block != Block::kAll)
    throw std::invalid_argument(std::string("make_strategy: ") + step_kind_name(kind) + " steps the ALL stage, not " +
                                block_name(block));
  switch (kind) {
    case StepKind::kLinearLeastSquares: return stage::make_linear_least_squares(block, ctx);
    case StepKind::kDampedNewton: return stage::make_damped_newton(block, false, ctx);
    case StepKind::kAlternating: return stage::make_damped_newton(block, true, ctx);
    case StepKind::kVariableProjection: return stage::make_variable_projection(ctx);
    case StepKind::kAdam: return stage::make_adam(ctx);
  }
  return nullptr;
}

}  // namespace gs
