// The empirical neural tangent kernel of a batch of networks at their current parameters: the
// spectrum of K = J J^T over the training points and all parameters, its condition number,
// and gradient-descent loss curves at a step size set from K's largest eigenvalue.
//
// The spectra themselves are a batch computation of the backends (backend/spectra.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpusweep/backend/spectra.h"
#include "gpusweep/util/util.h"  // median_of

namespace gs {

// The regression problem of "The Devil is in the Condition Numbers": x ~ N(0, I_d),
// y = x . w + noise z with z ~ N(0, 1) and one fixed w ~ N(0, I_d / d) (so x . w has unit
// variance). Everything comes from (data_seed, d). The test points are a second draw.
Dataset make_linear_problem(int d, int points, double noise, std::uint64_t data_seed);

// LeCun initialization for that problem: the rows of every input factor (G, U, Q) N(0, 1/d),
// the output weights D ~ N(0, 1/n) (for gpoly:K every coefficient of each neuron's
// polynomial, so its output's variance grows with their count), all biases (g, u, q) and d0
// zero.
void init_lecun(const Shape& s, std::uint64_t seed, double* theta);

// The width of an arch (nf factors, M output coefficients per neuron) whose parameter count
// matches an mlp of width n when biases are left out, as the paper counts:
// n (d + 1) = n_g (nf d + M), so n_g = round(n (d + 1) / (nf d + M)), at least 1. For glu:
// n (d+1) / (2d+1); for gpoly:K, M = C(d + K, K) (its constant coefficient counted).
int matched_width(Arch arch, int d, int n);

// The figures of one spectrum of a network with N points and P parameters. Eigenvalues at or
// below floor = lambda_max * max(N, P) * 2^-52 are numerically zero (the rounding of J J^T or
// J^T J scales with both the matrix size and the inner dimension): below_floor counts them, and
// lambda_min is the smallest eigenvalue above it, so cond = lambda_max / lambda_min is finite
// whenever lambda_max > 0. A zero or non-finite lambda_max gives ok = false.
struct SpectrumSummary {
  bool ok = false;
  std::string reason;
  double lambda_max = 0.0, lambda_min = 0.0, cond = 0.0, floor = 0.0;
  int below_floor = 0;
};
SpectrumSummary summarize_spectrum(const std::vector<double>& eig_ascending, int points, int params);

// ---- training dynamics ---------------------------------------------------------------------

// Plain gradient descent on L = (1/2N) sum_k (y(x_k) - f_k)^2, whose Gauss-Newton Hessian is
// J^T J / N with top eigenvalue lambda_max(K) / N. Each network steps with its own
// eta = lr_c N / lambda_max(K) (lr_c < 2 keeps the linearized dynamics stable; step_sizes()
// has the minibatch rule). batch > 0
// takes the gradient of the same loss over a minibatch of that many points instead (SGD;
// the points are reshuffled every epoch, in the same order for every network of a dataset,
// from data_seed). The recorded loss is always L over all N points.
struct DynamicsOptions {
  int steps = 0;
  double lr_c = 0.5;
  int batch = 0;           // 0: full batch
  int record_every = 1;    // record L at steps 0, k, 2k, ... and at the last step
  std::uint64_t data_seed = 0;
  int threads = 0;         // 0: all cores
};

// The steps at which L is recorded: 0, every, 2 every, ..., and steps itself.
std::vector<int> record_steps(int steps, int every);

struct LossCurve {
  double eta = 0.0;
  std::vector<double> loss;  // at record_steps(); NaN once the network has diverged
  bool diverged = false;     // L became non-finite
  bool failed = false;       // training could not run (out of memory): reason says why
  std::string reason;
};

// max_k K_kk = max_k |J_k|^2, the largest curvature one training point contributes.
double max_kernel_diagonal(const Shape& s, const double* theta, const Dataset& data);

// Each network's step size from its lambda_max(K) (NaN where that is not a positive number:
// the network is not trained). Full batch: eta = lr_c N / lambda_max(K). Minibatches of
// B < N points: the curvature of one minibatch's loss (1/2B) sum_{k in batch} r_k^2 reaches
// max_k K_kk / B (a batch of copies of the stiffest point) rather than lambda_max(K) / N, so
// eta = lr_c / max(lambda_max(K) / N, max_k K_kk / B), which is stable for lr_c < 2 on any
// minibatch of the linearized model and equals the full-batch rule when that bound is lower.
std::vector<double> step_sizes(const Batch& batch, const std::vector<double>& lambda_max, const DynamicsOptions& opt);

// Trains every network of the batch in place (batch.params) for opt.steps steps on the CPU
// with the step sizes eta (step_sizes()); a network whose eta is not a positive number is left
// untouched, with a curve of NaN. A network that cannot be trained (out of memory) is marked
// failed; the others go on.
std::vector<LossCurve> train_gd(Batch& batch, const std::vector<double>& eta, const DynamicsOptions& opt);

// The loss crossing of two median curves at the same recorded steps. A diverged value (NaN)
// counts as +infinity. The crossing is the first recorded step from which the gated curve
// stays strictly below the base curve to the end, provided the base curve was at or below the
// gated one at some earlier recorded step other than step 0 (where the two may tie by
// construction). found = false otherwise; note says which: "no crossing: the gated curve is
// below from the first step on" (below from the first recorded step after 0), "no crossing:
// the gated curve does not stay below to the end", or "too few recorded steps" (fewer than 2).
// With found, note is "crossing".
struct Crossing {
  bool found = false;
  int step = -1;
  std::string note;
};
Crossing find_crossing(const std::vector<int>& steps, const std::vector<double>& base,
                       const std::vector<double>& gated);

}  // namespace gs
