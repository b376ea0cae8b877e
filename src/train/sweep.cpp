// Sweep planning and execution: jobs, initialization, memory-bounded chunks.
#include "gpusweep/train/sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "gpusweep/model/data.h"

namespace gs {

namespace {
// The most host memory one spline fit may take for its dense least-squares matrix.
constexpr std::size_t kSplineFitBytes = std::size_t{2} << 30;

void check_baseline(const Model& m, const Dataset& ds, const std::vector<int>& widths) {
  const std::string name = "--arch " + model_name(m);
  if (ds.d != 1) throw std::invalid_argument(name + ": defined for 1D inputs only");
  if (m.method == Method::kConstruct && !widths.empty() && widths.front() < spline_network_min_width(m.arch))
    throw std::invalid_argument(name + ": needs widths >= " + std::to_string(spline_network_min_width(m.arch)) +
                                " (the neurons of its global polynomial); got " + std::to_string(widths.front()));
  if (m.method == Method::kPaper && ds.expression.empty())
    throw std::invalid_argument(name + ": the construction evaluates f between the data points, "
                                "so it needs --target, not --data");
  if ((m.method == Method::kSpline || m.method == Method::kConstruct) && !widths.empty()) {
    const std::size_t need = m.method == Method::kSpline
                                 ? spline_fit_bytes(m.degree, widths.back(), ds.n_train())
                                 : spline_fit_bytes(column_degree(m.arch), widths.back(), ds.n_train());
    if (need > kSplineFitBytes)
      throw std::invalid_argument(name + ": width " + std::to_string(widths.back()) + " on " +
                                  std::to_string(ds.n_train()) + " points needs " +
                                  std::to_string(need >> 20) + " MiB for its least-squares matrix (at most " +
                                  std::to_string(kSplineFitBytes >> 20) +
                                  " MiB); use fewer --points or widths");
  }
}
}  // namespace

void check_poly_terms(Arch arch, int d) {
  const long long m = poly_term_count(d, poly_degree(arch));
  if (m > kMaxPolyTerms)
    throw std::invalid_argument(std::string("--arch ") + arch_name(arch) + ": a polynomial of degree " +
                                std::to_string(poly_degree(arch)) + " in " + std::to_string(d) +
                                " inputs has " + std::to_string(m) + " coefficients per neuron, more than the " +
                                std::to_string(kMaxPolyTerms) + " that fit; use a lower degree");
}

std::vector<Job> make_jobs(const SweepSpec& spec) {
  std::vector<Job> jobs;
  for (int t = 0; t < static_cast<int>(spec.datasets.size()); ++t)
    for (const Model& m : spec.archs) {
      if (m.method != Method::kSpline) check_poly_terms(m.arch, spec.datasets[t].d);
      if (m.method == Method::kTrain && spec.init == InitKind::kSpline) {
        // The spline start is the construction, which exists for relu in 1D.
        check_baseline(Model(Method::kConstruct, m.arch, 0), spec.datasets[t], spec.widths);
        for (Act f : spec.acts)
          if (f != Act::kRelu)
            throw std::invalid_argument(std::string("--init spline: the spline network is a relu network; got --activation ") +
                                        act_name(f));
      }
      if (m.method != Method::kTrain) {
        check_baseline(m, spec.datasets[t], spec.widths);
        for (int w : spec.widths) jobs.push_back({t, m.arch, Act::kRelu, w, 0, m.method, m.degree});
        continue;
      }
      for (Act f : spec.acts)
        for (int w : spec.widths)
          for (int s = 0; s < spec.seeds; ++s) jobs.push_back({t, m.arch, f, w, s});
    }
  return jobs;
}

SweepSize sweep_size(const SweepSpec& spec) {
  SweepSize size;
  for (const auto& ds : spec.datasets)
    for (const Model& m : spec.archs) {
      const double copies = m.method == Method::kTrain ? static_cast<double>(spec.acts.size()) * spec.seeds : 1.0;
      for (int w : spec.widths) {
        size.networks += copies;
        size.params += copies * model_num_params(m, ds.d, w);
      }
    }
  return size;
}

std::uint64_t job_seed(const Job& job, const std::string& target_name) {
  std::uint64_t h = mix_seed(static_cast<std::uint64_t>(job.seed), hash_string(target_name));
  h = mix_seed(h, static_cast<std::uint64_t>(job.arch) * 16 + static_cast<std::uint64_t>(job.act));
  return mix_seed(h, static_cast<std::uint64_t>(job.width));
}

void init_params(const Shape& s, InitKind kind, const Dataset& data, std::uint64_t seed,
                 double* theta) {
  if (kind == InitKind::kSpline) {
    const std::vector<double> th = spline_network(s.arch, s.n, data.lo[0], data.hi[0], data.x_train, data.y_train);
    std::copy(th.begin(), th.end(), theta);
    return;
  }
  Rng rng(seed);
  const int p = num_params(s);
  for (int q = 0; q < p; ++q) theta[q] = rng.normal();
  double* G = theta;                 // n x d gate weights
  double* g = theta + s.n * s.d;     // n gate biases
  if (kind != InitKind::kRandom && s.d == 1) {
    const double lo = data.lo[0], hi = data.hi[0];
    const double margin = 0.0005 * (hi - lo);
    for (int i = 0; i < s.n; ++i) {
      const double knot =
          s.n == 1 ? lo - margin : (lo - margin) + (hi - lo + 2 * margin) * i / (s.n - 1);
      G[i] = i % 2 == 0 ? 1.0 : -1.0;
      g[i] = -G[i] * knot;
    }
    return;
  }
  // Random: each gate's hyperplane passes through a point c, uniform on the data's range in
  // 1D and a random training point for d > 1 (the corners of a box in many dimensions hold
  // no data, so a plane through one of them could miss every point).
  const double sd = 1.0 / std::sqrt(static_cast<double>(s.d));
  const int n_train = data.n_train();
  for (int i = 0; i < s.n; ++i) {
    const double* at = s.d > 1 && n_train > 0
                           ? data.x_train.data() + static_cast<std::size_t>(rng.next() % n_train) * s.d
                           : nullptr;
    double b = 0.0;
    for (int j = 0; j < s.d; ++j) {
      G[i * s.d + j] = sd * rng.normal();
      const double c = at ? at[j] : data.lo[j] + (data.hi[j] - data.lo[j]) * rng.uniform();
      b -= G[i * s.d + j] * c;
    }
    g[i] = b;
  }
}

std::vector<int> dataset_dims(const std::vector<Dataset>& datasets) {
  std::vector<int> dims;
  for (const auto& ds : datasets) dims.push_back(ds.d);
  return dims;
}

int job_params(const Job& job, const std::vector<int>& dims) {
  return model_num_params(job.model(), dims.at(job.target), job.width);
}

std::vector<std::vector<int>> plan_chunks(const std::vector<Job>& jobs, const std::vector<int>& dims,
                                          std::size_t bytes_budget,
                                          const std::function<std::size_t(int)>& bytes_per_net,
                                          int max_networks) {
  std::vector<int> order(jobs.size());
  std::iota(order.begin(), order.end(), 0);
  auto params = [&](int j) { return job_params(jobs[j], dims); };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return params(a) > params(b); });
  std::vector<std::vector<int>> chunks;
  std::size_t used = 0;
  for (int j : order) {
    if (jobs[j].method != Method::kTrain) continue;
    const std::size_t need = bytes_per_net(params(j));
    if (need > bytes_budget)
      throw std::invalid_argument(
          "width " + std::to_string(jobs[j].width) + " (" + arch_name(jobs[j].arch) + ", " +
          std::to_string(params(j)) + " parameters) needs " + std::to_string(need >> 20) +
          " MiB per network, more than the backend's budget of " +
          std::to_string(bytes_budget >> 20) + " MiB");
    if (chunks.empty() || used + need > bytes_budget ||
        (max_networks > 0 && static_cast<int>(chunks.back().size()) >= max_networks)) {
      chunks.emplace_back();
      used = 0;
    }
    chunks.back().push_back(j);
    used += need;
  }
  return chunks;
}

int max_points(const std::vector<Dataset>& datasets) {
  int most = 0;
  for (const auto& ds : datasets) most = std::max(most, ds.n_train() + ds.n_test());
  return most;
}

void restart_params(const Shape& s, InitKind kind, const Dataset& data, std::uint64_t seed, int k,
                    double* theta) {
  init_params(s, kind, data, mix_seed(seed, static_cast<std::uint64_t>(k)), theta);
  if (s.d != 1 || data.lo.empty()) return;
  Rng rng(mix_seed(mix_seed(seed, static_cast<std::uint64_t>(k)), 0x6b6e6f7473ULL));
  const double lo = data.lo[0], hi = data.hi[0];
  const double reach = 0.25 * (hi - lo) / std::max(1, s.n);
  for (int i = 0; i < s.n; ++i) {
    const double G = theta[i];
    if (G == 0.0) continue;
    const double kink = -theta[s.n + i] / G;
    const double moved = kink + reach * (2.0 * rng.uniform() - 1.0);
    if (kink > lo && kink < hi && moved > lo && moved < hi) theta[s.n + i] = -G * moved;
  }
}

std::vector<std::vector<int>> plan_sweep_chunks(const SweepSpec& spec, const std::vector<Job>& jobs,
                                                const Backend& backend) {
  const int points = max_points(spec.datasets);
  const int starts = 1 + spec.restarts;
  const int most = spec.chunk_networks > 0 ? spec.chunk_networks : backend.max_chunk_networks();
  return plan_chunks(jobs, dataset_dims(spec.datasets), backend.memory_budget(),
                     [&](int p) { return starts * backend.bytes_per_network(p, points); },
                     most > 0 ? std::max(1, most / starts) : 0);
}

// ---- one baseline as a sweep row -------------------------------------------------------------

namespace {
template <class Fn>
double rmse(const Fn& y, const std::vector<double>& x, const std::vector<double>& f) {
  double sse = 0.0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    const double e = y(x[k]) - f[k];
    sse += e * e;
  }
  return x.empty() ? 0.0 : std::sqrt(sse / x.size());
}
}  // namespace

NetResult run_baseline(const Model& m, int width, const Dataset& ds, const TargetFn& f) {
  if (m.method == Method::kTrain) throw std::logic_error("run_baseline: " + model_name(m) + " is trained");
  if (ds.d != 1) throw std::invalid_argument(model_name(m) + " is defined for 1D inputs only");
  const auto t0 = std::chrono::steady_clock::now();
  NetResult r;
  r.status = Status::kConverged;
  r.newton_steps = 0;
  if (m.method == Method::kPaper || m.method == Method::kConstruct) {
    r.params = m.method == Method::kPaper
                   ? paper_network(m.arch, width, ds.lo[0], ds.hi[0], f)
                   : spline_network(m.arch, width, ds.lo[0], ds.hi[0], ds.x_train, ds.y_train);
    const Shape s{m.arch, Act::kRelu, 1, width};
    // Measured through the shared network math: the construction is a real network.
    auto y = [&](double x) { return evaluate(s, r.params.data(), &x); };
    r.train_rmse = rmse(y, ds.x_train, ds.y_train);
    r.test_rmse = rmse(y, ds.x_test, ds.y_test);
    r.reason = "construction";
  } else {
    const UniformSpline sp = fit_spline(m.degree, width, ds.lo[0], ds.hi[0], ds.x_train, ds.y_train);
    r.train_rmse = rmse(sp, ds.x_train, ds.y_train);
    r.test_rmse = rmse(sp, ds.x_test, ds.y_test);
    r.params = sp.coef;
    r.reason = "least squares";
  }
  if (!std::isfinite(r.train_rmse) || !std::isfinite(r.test_rmse)) {
    r.status = Status::kFailed;
    r.reason = "non-finite";
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<NetResult> run_sweep(const SweepSpec& spec, const std::vector<Job>& jobs,
                                 Backend& backend,
                                 const std::function<void(const SweepProgress&)>& progress,
                                 const ChunkDone& chunk_done, SweepTransfers* transfers) {
  const auto chunks = plan_sweep_chunks(spec, jobs, backend);
  const int starts = 1 + spec.restarts;
  std::vector<NetResult> results(jobs.size());
  const auto t0 = std::chrono::steady_clock::now();
  int done = 0;
  std::vector<int> baselines;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    if (jobs[j].method == Method::kTrain) continue;
    const Dataset& ds = spec.datasets[jobs[j].target];
    results[j] = run_baseline(jobs[j].model(), jobs[j].width, ds,
                              [&ds](const std::vector<double>& xs) { return evaluate_target(ds, xs); });
    baselines.push_back(static_cast<int>(j));
    ++done;
  }
  if (chunk_done && !baselines.empty()) chunk_done(baselines, results);
  for (std::size_t c = 0; c < chunks.size(); ++c) {
    // Network q * starts + k of the batch is start k of the chunk's job q.
    Batch batch;
    for (const auto& ds : spec.datasets) batch.datasets.push_back(&ds);
    std::vector<double> theta;
    for (int j : chunks[c]) {
      const Job& job = jobs[j];
      const Dataset& ds = spec.datasets[job.target];
      const Shape s{job.arch, job.act, ds.d, job.width};
      theta.resize(num_params(s));
      for (int k = 0; k < starts; ++k) {
        if (k == 0) init_params(s, spec.init, ds, job_seed(job, ds.name), theta.data());
        else restart_params(s, spec.init, ds, job_seed(job, ds.name), k, theta.data());
        batch.add(s, job.target, theta.data());
      }
    }
    const std::optional<HostTransfers> before = backend.host_transfers();
    backend.load(batch);
    auto res = train(backend, batch, spec.train);
    backend.read_params(theta);
    if (transfers) {
      if (const std::optional<HostTransfers> after = backend.host_transfers(); after && before) {
        if (!transfers->bytes) transfers->bytes = HostTransfers{};
        HostTransfers& t = *transfers->bytes;
        t.bytes_to_host += after->bytes_to_host - before->bytes_to_host;
        t.bytes_to_device += after->bytes_to_device - before->bytes_to_device;
        t.host_var_pro_systems += after->host_var_pro_systems - before->host_var_pro_systems;
        t.host_var_pro_trials += after->host_var_pro_trials - before->host_var_pro_trials;
      }
      for (std::size_t k = 0; k < res.size(); ++k) {
        transfers->network_steps += res[k].newton_steps;
        transfers->param_steps += static_cast<double>(num_params(batch.nets[k].shape)) * res[k].newton_steps;
      }
    }
    for (std::size_t q = 0; q < chunks[c].size(); ++q) {
      // The start with the lowest training loss (a failed one only when all failed); its
      // row counts the compute seconds of every start.
      int best = 0;
      double seconds = 0.0;
      for (int k = 0; k < starts; ++k) {
        const NetResult& r = res[q * starts + k];
        seconds += r.seconds;
        const NetResult& b = res[q * starts + best];
        const bool ok = r.status != Status::kFailed, b_ok = b.status != Status::kFailed;
        if ((ok && !b_ok) || (ok == b_ok && r.train_rmse < b.train_rmse)) best = k;
      }
      const NetDesc& nd = batch.nets[q * starts + best];
      NetResult& r = res[q * starts + best];
      r.params.assign(theta.begin() + nd.offset, theta.begin() + nd.offset + num_params(nd.shape));
      r.start = best;
      r.seconds = seconds;
      results[chunks[c][q]] = std::move(r);
    }
    done += static_cast<int>(chunks[c].size());
    if (chunk_done) chunk_done(chunks[c], results);
    if (progress) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress({static_cast<int>(c) + 1, static_cast<int>(chunks.size()), done,
                static_cast<int>(jobs.size()), el});
    }
  }
  return results;
}

}  // namespace gs
