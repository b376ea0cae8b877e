// The sweep: (target x arch x activation x width x seed) jobs, their initial parameters,
// chunks that fit the backend's memory, and the run over all chunks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gpusweep/backend/backend.h"
#include "gpusweep/model/model.h"
#include "gpusweep/solver/baselines.h"
#include "gpusweep/train/driver.h"

namespace gs {

// kAuto: MASO for 1D inputs, random for d > 1. kSpline: the spline network of the arch
// (baselines.h spline_network; relu, 1D), so training starts from the least-squares spline.
enum class InitKind : int { kMaso = 0, kRandom = 1, kAuto = 2, kSpline = 3 };

struct Job {
  int target;  // index into the sweep's datasets
  Arch arch;
  Act act;
  int width;
  int seed;
  Method method = Method::kTrain;  // constructions and splines skip the backend
  int degree = 0;                  // spline degree
  Model model() const { return Model(method, arch, degree); }
};

struct SweepSpec {
  std::vector<Dataset> datasets;
  std::vector<Model> archs;  // what --arch names: trained archs and baselines
  std::vector<Act> acts;
  std::vector<int> widths;
  int seeds = 1;
  int chunk_networks = 0;  // networks per chunk at most; 0: the backend's choice
  int restarts = 0;        // more starts per trained job (restart_params); the best is kept
  InitKind init = InitKind::kAuto;
  TrainOptions train;
};

// Throws std::invalid_argument when arch's output polynomial in d inputs has more
// coefficients than kMaxPolyTerms (gpoly:K with large K and d).
void check_poly_terms(Arch arch, int d);

// Jobs in canonical order: target, arch, activation, width, seed. A baseline (construction
// or spline) is deterministic and has no activation to choose: one job per target and
// width, seed 0, act relu. Throws std::invalid_argument, before anything runs, for an arch
// check_poly_terms refuses on a dataset's d; for a baseline its data cannot give: a paper's
// construction on --data points (no f between them), d > 1, a spline network below its
// smallest width, or a spline whose dense least-squares matrix would not fit in memory; and
// for --init spline, whatever the spline network cannot give, or an activation other than
// relu.
std::vector<Job> make_jobs(const SweepSpec& spec);

// What make_jobs would give, counted without building it: the number of jobs and the sum of
// their parameter counts.
struct SweepSize {
  double networks = 0.0;
  double params = 0.0;
};
SweepSize sweep_size(const SweepSpec& spec);

// Initial parameters of one network. MASO (1D): knots evenly spaced just outside the data's
// range, gates alternating in direction so no neuron is dead; the other blocks N(0, 1).
// Spline: the spline network on the training points, the same for every seed.
// Random: gate rows N(0, 1/d); each gate's hyperplane passes through a uniform point of the
// data's range (1D) or through a random training point (d > 1). MASO has no natural knot order
// for d > 1, so kMaso and kAuto are random there (the CLI refuses --init maso for d > 1).
void init_params(const Shape& s, InitKind kind, const Dataset& data, std::uint64_t seed,
                 double* theta);
std::uint64_t job_seed(const Job& job, const std::string& target_name);

// Start k >= 1 of a job (--restarts): init_params with the seed mixed with k, then, on 1D
// inputs, every kink inside the domain moved by a uniform amount of at most a quarter of the
// mean spacing of the n knots, so the restarts explore other minima near the spline start.
void restart_params(const Shape& s, InitKind kind, const Dataset& data, std::uint64_t seed, int k,
                    double* theta);

// The input dimension of each dataset, and a job's parameter count given those.
std::vector<int> dataset_dims(const std::vector<Dataset>& datasets);
int job_params(const Job& job, const std::vector<int>& dims);

// Groups the trained jobs' indices into chunks whose backend memory fits the budget, largest
// first so the threads stay busy, and of at most max_networks each (0: no limit); baseline
// jobs are in no chunk. Throws std::invalid_argument when one network alone does not fit.
std::vector<std::vector<int>> plan_chunks(const std::vector<Job>& jobs, const std::vector<int>& dims,
                                          std::size_t bytes_budget,
                                          const std::function<std::size_t(int)>& bytes_per_net,
                                          int max_networks = 0);

// plan_chunks for a sweep on a backend: each job trains 1 + spec.restarts networks together.
std::vector<std::vector<int>> plan_sweep_chunks(const SweepSpec& spec, const std::vector<Job>& jobs,
                                                const Backend& backend);

// The most points (training and test) of any dataset: the planner's per-network point count.
int max_points(const std::vector<Dataset>& datasets);

// Builds or fits one baseline model (any method but kTrain) of width n on a 1D dataset and
// measures it: RMSE on the training and the test points, status converged with reason
// "construction" or "least squares", no Newton steps, params = the network's parameters
// (constructions) or the B-spline coefficients (splines). The paper's constructions
// evaluate f through `f` (f at points between the data); the others use the training points.
NetResult run_baseline(const Model& m, int width, const Dataset& ds, const TargetFn& f);

struct SweepProgress {
  int chunks_done, chunks_total, nets_done, nets_total;
  double elapsed;
};

// Called as results become final: the indices (into jobs) of the networks just finished, and
// the results so far (indexed like jobs). The baselines come first, then each chunk.
using ChunkDone = std::function<void(const std::vector<int>& done, const std::vector<NetResult>& results)>;

// What a sweep moved between the host and the device, against the work it did: the backend's
// host transfers over the chunks it trained (none on a backend without a device), and its
// network-steps, the steps of one network as NetResult::newton_steps counts them, summed over
// every network trained (every start of a job with restarts), with P times those steps summed
// alike (param_steps / network_steps: the mean P of a network-step).
struct SweepTransfers {
  std::optional<HostTransfers> bytes;
  long long network_steps = 0;
  double param_steps = 0.0;
};

// Trains every trained job on the backend and computes the baselines on the host; results
// come back in job order. With transfers, adds to it what the chunks moved and did.
std::vector<NetResult> run_sweep(const SweepSpec& spec, const std::vector<Job>& jobs,
                                 Backend& backend,
                                 const std::function<void(const SweepProgress&)>& progress = {},
                                 const ChunkDone& chunk_done = {}, SweepTransfers* transfers = nullptr);

}  // namespace gs
