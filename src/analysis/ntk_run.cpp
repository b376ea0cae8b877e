// The `gpu-sweep ntk` experiment: argument checks, the networks and their initialization, the
// spectra and the dynamics in one batch each, and the CSV and JSON records. See ntk_run.h.
#include "gpusweep/analysis/ntk_run.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "gpusweep/model/data.h"
#include "gpusweep/model/model.h"
#include "gpusweep/train/sweep.h"
#include "gpusweep/util/csv.h"
#include "gpusweep/util/text.h"
#include "gpusweep/util/util.h"

namespace gs {

namespace {

// A network whose Jacobian J (N x P doubles) is larger than this is refused up front: J must
// fit in memory once per thread.
constexpr double kMaxJacobianBytes = 8.0 * (1ull << 30);
// The share of physical memory a whole run may take.
constexpr double kMemoryShare = 0.5;
constexpr int kMaxSteps = 10000000;
constexpr int kDefaultRecords = 500;

std::vector<int> parse_dims(const std::string& text) {
  std::vector<int> out;
  for (const auto& part : split_list(text, ',')) {
    const bool digits = !part.empty() && part.size() <= 9 && part.find_first_not_of("0123456789") == std::string::npos;
    const long v = digits ? std::stol(part) : -1;
    if (!digits || v < 1 || v > kMaxDim)
      throw std::invalid_argument("--dims '" + printable(text, 80) + "': '" + printable(part, 40) +
                                  "' is not an input dimension from 1 to " + std::to_string(kMaxDim));
    if (std::find(out.begin(), out.end(), static_cast<int>(v)) == out.end()) out.push_back(static_cast<int>(v));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A CSV cell: the number, or empty for NaN.
std::string cell(double v) { return std::isnan(v) ? "" : num(v); }

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

std::string gib(double bytes) {
  char b[40];
  std::snprintf(b, sizeof b, "%.3g GiB", bytes / (1ull << 30));
  return b;
}

// Refuses a run whose networks or memory are out of reach, before anything large is built:
// the datasets (train and test, points x d each), every network's parameters, per thread a
// Jacobian and its Gram matrix (the CPU spectra), every network's eigenvalues (twice with
// spectra_after) and the recorded losses.
void check_run_size(const NtkSpec& spec, const std::vector<int>& dims, int points, int threads) {
  const double nets_per_d = static_cast<double>(spec.archs.size()) * spec.acts.size() * spec.widths.size() * spec.seeds;
  const double nets = nets_per_d * dims.size();
  if (nets > std::numeric_limits<int>::max())
    throw std::invalid_argument("ntk: " + cell(nets) + " networks (dims x archs x activations x widths x seeds) is more than " +
                                std::to_string(std::numeric_limits<int>::max()) + "; use fewer --widths or --seeds");
  const double records =
      spec.dyn.steps > 0 ? static_cast<double>(spec.dyn.steps) / std::max(1, spec.dyn.record_every) + 2.0 : 0.0;
  const double spectra = spec.spectra_after ? 2.0 : 1.0;
  const double n = points;
  double bytes = 0.0, per_thread = 0.0;
  for (int d : dims) {
    bytes += 2.0 * n * (d + 1) * 8.0;  // x and y, train and test
    for (Arch arch : spec.archs)
      for (int w : spec.widths) {
        check_poly_terms(arch, d);
        const double width = spec.match_params ? matched_width(arch, d, w) : w;
        const double p = num_params(Shape{arch, Act::kRelu, d, static_cast<int>(width)});
        if (p * n * 8.0 > kMaxJacobianBytes)
          throw std::invalid_argument("ntk: " + std::string(arch_name(arch)) + " of width " +
                                      std::to_string(static_cast<long long>(width)) + " at d = " + std::to_string(d) +
                                      " on " + std::to_string(points) + " points: its Jacobian would need " +
                                      std::to_string(static_cast<long long>(p * n * 8.0 / (1 << 20))) +
                                      " MiB (limit 8 GiB); use fewer --points or smaller --widths");
        const double m = std::min(n, p);
        const double per_net = spec.acts.size() * static_cast<double>(spec.seeds);
        bytes += per_net * 8.0 * (p + spectra * m + records);
        per_thread = std::max(per_thread, 8.0 * (n * p + m * m));
      }
  }
  bytes += per_thread * thread_count(threads);
  const double phys = physical_memory_bytes();
  if (phys > 0.0 && bytes > kMemoryShare * phys)
    throw std::invalid_argument("ntk: " + cell(nets) + " networks would need about " + gib(bytes) +
                                " of memory, more than half of this machine's " + gib(phys) +
                                "; use fewer --widths, --seeds, --dims or --points");
}

double elapsed(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

NtkSpec make_ntk_spec(const NtkArgs& a) {
  NtkSpec spec;
  spec.problem = a.problem;
  for (const auto& m : parse_archs(a.arch)) {
    if (m.method != Method::kTrain)
      throw std::invalid_argument("ntk: --arch takes mlp, glu and gqu, not the baseline '" + model_name(m) + "'");
    spec.archs.push_back(m.arch);
  }
  spec.acts = parse_acts(a.activation);
  spec.widths = parse_widths(a.widths);
  if (a.seeds < 1) throw std::invalid_argument("--seeds must be at least 1");
  spec.seeds = a.seeds;
  spec.match_params = a.match_params;
  if (!(a.noise >= 0.0 && std::isfinite(a.noise))) throw std::invalid_argument("--noise must be finite and >= 0");
  if (a.points < 2) throw std::invalid_argument("--points must be at least 2");
  if (a.hist_bins < 1 || a.hist_bins > 10000) throw std::invalid_argument("--hist-bins must be from 1 to 10000");
  spec.hist_bins = a.hist_bins;
  if (a.device == "cpu") spec.device = DeviceKind::kCpu;
  else if (a.device == "cuda") spec.device = DeviceKind::kCuda;
  else if (a.device == "auto") spec.device = DeviceKind::kAuto;
  else throw std::invalid_argument("--device: unknown device '" + printable(a.device, 40) + "' (cpu, cuda or auto)");
  spec.threads = a.threads;
  if (a.steps < 0 || a.steps > kMaxSteps)
    throw std::invalid_argument("--steps must be from 0 to " + std::to_string(kMaxSteps));
  if (!(a.lr_c > 0.0 && a.lr_c < 1e6))
    throw std::invalid_argument("--lr-c must be above 0 and below 1e6 (below 2 for stability)");
  if (a.batch < 0) throw std::invalid_argument("--batch must be >= 0 (0: full batch)");
  if (a.batch > a.points)
    throw std::invalid_argument("--batch " + std::to_string(a.batch) + " is more than --points " +
                                std::to_string(a.points));
  if (a.record_every < 0) throw std::invalid_argument("--record-every must be >= 0 (0: automatic)");
  if (!a.lr_rule.empty() && a.lr_rule != "own" && a.lr_rule != "shared")
    throw std::invalid_argument("--lr-rule: want own or shared, not '" + printable(a.lr_rule, 40) + "'");
  spec.shared_lr = a.lr_rule == "shared";
  if (a.steps == 0) {  // the options of the dynamics mean nothing without them
    const char* given = a.batch > 0 ? "--batch" : !a.lr_rule.empty() ? "--lr-rule" : a.record_every > 0 ? "--record-every" : nullptr;
    if (given) throw std::invalid_argument(std::string(given) + " sets up training: give --steps too");
  }
  if (a.spectra_after && a.steps == 0)
    throw std::invalid_argument("--spectra-after needs training: give --steps");
  spec.spectra_after = a.spectra_after;
  spec.dyn.steps = a.steps;
  spec.dyn.lr_c = a.lr_c;
  spec.dyn.batch = a.batch;
  spec.dyn.record_every = a.record_every > 0 ? a.record_every : std::max(1, a.steps / kDefaultRecords);
  spec.dyn.data_seed = a.data_seed;
  spec.dyn.threads = a.threads;

  // The input dimensions, checked and measured before any dataset is built.
  std::vector<int> dims = {1};
  spec.lecun = a.problem == "linear";  // LeCun init (linear); MASO for a 1D target of the sweeps
  if (spec.lecun) {
    dims = parse_dims(a.dims.empty() ? "20" : a.dims);
  } else if (!a.dims.empty() && parse_dims(a.dims) != std::vector<int>{1}) {
    throw std::invalid_argument("--dims: the problem '" + printable(a.problem, 80) +
                                "' is a 1D target; only --dims 1 goes with it (or --problem linear)");
  }
  check_run_size(spec, dims, a.points, a.threads);

  if (spec.lecun) {
    for (int d : dims) spec.datasets.push_back(make_linear_problem(d, a.points, a.noise, a.data_seed));
  } else {
    Dataset ds = make_target_dataset(a.problem, a.points, a.data_seed);
    if (ds.d != 1)
      throw std::invalid_argument("--problem '" + printable(a.problem, 80) + "': has d = " + std::to_string(ds.d) +
                                  "; ntk takes 'linear' or a 1D target (MASO initialization)");
    spec.datasets.push_back(std::move(ds));
  }
  return spec;
}

std::vector<NtkNet> make_ntk_nets(const NtkSpec& spec) {
  std::vector<NtkNet> nets;
  for (int t = 0; t < static_cast<int>(spec.datasets.size()); ++t)
    for (Arch arch : spec.archs)
      for (Act act : spec.acts)
        for (int w : spec.widths)
          for (int seed = 0; seed < spec.seeds; ++seed) {
            const int n = spec.match_params ? matched_width(arch, spec.datasets[t].d, w) : w;
            nets.push_back(NtkNet{t, arch, act, w, n, seed});
          }
  return nets;
}

namespace {

// The initial parameters of one network: a function of (seed, arch, width, d) only, so the
// activations of one arch start from the same parameters.
std::vector<double> initial_params(const NtkSpec& spec, const NtkNet& net) {
  const Dataset& ds = spec.datasets[net.dataset];
  const Shape s{net.arch, net.act, ds.d, net.width};
  std::uint64_t seed = mix_seed(hash_string("ntk"), static_cast<std::uint64_t>(net.seed));
  seed = mix_seed(seed, static_cast<std::uint64_t>(net.arch));
  seed = mix_seed(seed, static_cast<std::uint64_t>(net.width));
  seed = mix_seed(seed, static_cast<std::uint64_t>(ds.d));
  std::vector<double> th(num_params(s));
  if (spec.lecun) init_lecun(s, seed, th.data());
  else init_params(s, InitKind::kMaso, ds, seed, th.data());
  return th;
}

std::vector<SpectrumSummary> summarize_all(const Batch& batch, std::vector<NtkSpectrum>& sp,
                                           std::vector<std::vector<double>>* eig) {
  std::vector<SpectrumSummary> out;
  for (std::size_t i = 0; i < sp.size(); ++i) {
    auto& s = sp[i];
    const NetDesc& nd = batch.nets[i];
    SpectrumSummary sum = s.ok ? summarize_spectrum(s.eig, batch.datasets[nd.dataset]->n_train(), num_params(nd.shape))
                               : SpectrumSummary{};
    if (!s.ok) sum.reason = s.reason;
    out.push_back(sum);
    eig->push_back(std::move(s.eig));
  }
  return out;
}

}  // namespace

NtkResult run_ntk(const NtkSpec& spec, const std::function<void(const std::string&)>& progress) {
  NtkResult r;
  r.nets = make_ntk_nets(spec);
  Batch batch;
  for (const auto& ds : spec.datasets) batch.datasets.push_back(&ds);
  for (const auto& net : r.nets) {
    const auto th = initial_params(spec, net);
    batch.add(Shape{net.arch, net.act, spec.datasets[net.dataset].d, net.width}, net.dataset, th.data());
  }
  auto t0 = std::chrono::steady_clock::now();
  auto sp = ntk_spectra(batch, spec.device, spec.threads, &r.backend);
  r.init = summarize_all(batch, sp, &r.eig_init);
  r.seconds_spectra = elapsed(t0);
  if (progress) progress("spectra of " + std::to_string(batch.size()) + " networks at initialization on " + r.backend);
  if (spec.dyn.steps > 0) {
    t0 = std::chrono::steady_clock::now();
    std::vector<double> lmax(r.nets.size(), std::numeric_limits<double>::quiet_NaN());
    for (std::size_t i = 0; i < r.nets.size(); ++i)
      if (r.init[i].ok) lmax[i] = r.init[i].lambda_max;
    std::vector<double> eta = step_sizes(batch, lmax, spec.dyn);
    if (spec.shared_lr) {
      // The smallest step among the archs of each (d, activation, width, seed): with full
      // batches, the step of their largest lambda_max.
      std::map<std::tuple<int, int, int, int>, double> step;
      auto key = [](const NtkNet& n) { return std::make_tuple(n.dataset, static_cast<int>(n.act), n.base_width, n.seed); };
      for (std::size_t i = 0; i < r.nets.size(); ++i)
        if (std::isfinite(eta[i])) {
          auto it = step.find(key(r.nets[i]));
          if (it == step.end()) step[key(r.nets[i])] = eta[i];
          else it->second = std::min(it->second, eta[i]);
        }
      for (std::size_t i = 0; i < r.nets.size(); ++i)
        if (std::isfinite(eta[i])) eta[i] = step[key(r.nets[i])];
    }
    r.curves = train_gd(batch, eta, spec.dyn);
    r.steps = record_steps(spec.dyn.steps, spec.dyn.record_every);
    r.seconds_dynamics = elapsed(t0);
    if (progress) progress(std::to_string(spec.dyn.steps) + " steps of " + (spec.dyn.batch > 0 ? "SGD" : "GD") +
                           " for " + std::to_string(batch.size()) + " networks on the CPU");
    if (spec.spectra_after) {
      t0 = std::chrono::steady_clock::now();
      std::string backend;
      auto after = ntk_spectra(batch, spec.device, spec.threads, &backend);
      r.after = summarize_all(batch, after, &r.eig_after);
      r.seconds_spectra += elapsed(t0);
    }
  }
  return r;
}

// ---- records -------------------------------------------------------------------------------

namespace {

// Groups of networks that differ only in the seed.
using GroupKey = std::tuple<int, int, int, int>;  // dataset, arch, act, base width
GroupKey group_of(const NtkNet& n) {
  return {n.dataset, static_cast<int>(n.arch), static_cast<int>(n.act), n.base_width};
}

struct Stats {
  double median = std::numeric_limits<double>::quiet_NaN();
  double lo = median, hi = median;
  int count = 0;
};
Stats stats_of(std::vector<double> v) {
  Stats s;
  s.count = static_cast<int>(v.size());
  if (v.empty()) return s;
  s.median = median_of(v);
  s.lo = *std::min_element(v.begin(), v.end());
  s.hi = *std::max_element(v.begin(), v.end());
  return s;
}

}  // namespace

NtkFiles ntk_files(const NtkSpec& spec, const NtkResult& r, const nlohmann::json& config) {
  NtkFiles f;
  const bool dyn = !r.curves.empty();
  const bool after = !r.after.empty();
  auto act_of = [](Act a) { return std::string(act_name(a)); };

  // ntk.csv
  std::ostringstream csv;
  csv << "problem,arch,activation,d,base_width,width,params,seed,points,when,gram,lambda_max,lambda_min,cond,"
         "below_floor,floor,eta,final_loss,status,reason\n";
  for (int w = 0; w < (after ? 2 : 1); ++w) {
    const auto& sums = w == 0 ? r.init : r.after;
    for (std::size_t i = 0; i < r.nets.size(); ++i) {
      const NtkNet& n = r.nets[i];
      const Dataset& ds = spec.datasets[n.dataset];
      const int p = num_params(Shape{n.arch, n.act, ds.d, n.width});
      const SpectrumSummary& s = sums[i];
      const double eta = dyn ? r.curves[i].eta : std::numeric_limits<double>::quiet_NaN();
      const double fl = dyn && !r.curves[i].loss.empty() ? r.curves[i].loss.back() : std::numeric_limits<double>::quiet_NaN();
      std::string status = s.ok ? "ok" : "failed", reason = s.ok ? "" : s.reason;
      if (s.ok && dyn && r.curves[i].failed) status = "failed", reason = r.curves[i].reason;
      else if (s.ok && dyn && r.curves[i].diverged) status = "diverged", reason = "the loss became non-finite";
      csv << csv_quote(spec.problem) << "," << arch_name(n.arch) << "," << act_of(n.act) << "," << ds.d << ","
          << n.base_width << "," << n.width << "," << p << "," << n.seed << "," << ds.n_train() << ","
          << (w == 0 ? "init" : "trained") << "," << gram_name(gram_kind(ds.n_train(), p)) << ","
          << (s.ok ? cell(s.lambda_max) : "") << "," << (s.ok ? cell(s.lambda_min) : "") << ","
          << (s.ok ? cell(s.cond) : "") << "," << (s.ok ? std::to_string(s.below_floor) : "") << ","
          << (s.ok ? cell(s.floor) : "") << "," << (dyn && s.ok ? cell(eta) : "") << ","
          << (dyn && s.ok ? cell(fl) : "") << "," << status << "," << csv_quote(reason) << "\n";
    }
  }
  f.ntk_csv = csv.str();

  // Histograms of log10 eigenvalue above the floor, summed over seeds, on bins shared by the
  // whole run so that the arches overlay.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int w = 0; w < (after ? 2 : 1); ++w)
    for (std::size_t i = 0; i < r.nets.size(); ++i) {
      const auto& s = (w == 0 ? r.init : r.after)[i];
      if (!s.ok) continue;
      for (double v : (w == 0 ? r.eig_init : r.eig_after)[i])
        if (v > s.floor) lo = std::min(lo, std::log10(v)), hi = std::max(hi, std::log10(v));
    }
  std::ostringstream hist;
  hist << "problem,arch,activation,d,base_width,when,bin_lo,bin_hi,count,fraction\n";
  if (lo <= hi) {
    lo = std::floor(lo * 4.0) / 4.0;  // quarter decades, so that bin edges read well
    hi = std::max(lo + 0.25, std::ceil(hi * 4.0) / 4.0);
    const int bins = spec.hist_bins;
    const double width = (hi - lo) / bins;
    for (int w = 0; w < (after ? 2 : 1); ++w) {
      std::map<GroupKey, std::vector<long long>> counts;
      std::vector<GroupKey> order;
      for (std::size_t i = 0; i < r.nets.size(); ++i) {
        const auto key = group_of(r.nets[i]);
        if (!counts.count(key)) counts[key].assign(bins, 0), order.push_back(key);
        const auto& s = (w == 0 ? r.init : r.after)[i];
        if (!s.ok) continue;
        for (double v : (w == 0 ? r.eig_init : r.eig_after)[i]) {
          if (!(v > s.floor)) continue;
          const int b = std::min(bins - 1, std::max(0, static_cast<int>((std::log10(v) - lo) / width)));
          counts[key][b]++;
        }
      }
      for (const auto& key : order) {
        const auto& c = counts[key];
        long long total = 0;
        for (auto v : c) total += v;
        const auto [t, arch, act, bw] = key;
        for (int b = 0; b < bins; ++b)
          hist << csv_quote(spec.problem) << "," << arch_name(static_cast<Arch>(arch)) << ","
               << act_of(static_cast<Act>(act)) << "," << spec.datasets[t].d << "," << bw << ","
               << (w == 0 ? "init" : "trained") << "," << cell(lo + b * width) << "," << cell(lo + (b + 1) * width)
               << "," << c[b] << "," << cell(total ? static_cast<double>(c[b]) / total : 0.0) << "\n";
      }
    }
  }
  f.hist_csv = hist.str();

  // Summary: per group, the condition numbers over seeds; the gated/mlp ratios of medians.
  nlohmann::json& js = f.summary;
  js["config"] = config;
  js["backend"] = r.backend;
  js["seconds"] = {{"spectra", r.seconds_spectra}, {"dynamics", r.seconds_dynamics}};
  js["floor"] = "eigenvalues <= lambda_max * max(N, P) * 2^-52 count as zero; lambda_min is the smallest above";
  js["eta"] = spec.dyn.batch > 0
                  ? "eta = lr_c / max(lambda_max(K) / N, max_k K_kk / B), K = J J^T, B = --batch, for L = (1/2N) sum (y - f)^2"
                  : "eta = lr_c * N / lambda_max(K), K = J J^T, for L = (1/2N) sum (y - f)^2";
  std::map<GroupKey, std::vector<std::size_t>> members;
  std::vector<GroupKey> order;
  for (std::size_t i = 0; i < r.nets.size(); ++i) {
    const auto key = group_of(r.nets[i]);
    if (!members.count(key)) order.push_back(key);
    members[key].push_back(i);
  }
  std::map<std::pair<GroupKey, int>, double> median_cond;  // (group, when) -> median cond
  js["groups"] = nlohmann::json::array();
  for (int w = 0; w < (after ? 2 : 1); ++w)
    for (const auto& key : order) {
      const auto& sums = w == 0 ? r.init : r.after;
      std::vector<double> cond, lmax, lmin, below;
      int failed = 0;
      for (auto i : members[key]) {
        if (!sums[i].ok) {
          ++failed;
          continue;
        }
        cond.push_back(sums[i].cond);
        lmax.push_back(sums[i].lambda_max);
        lmin.push_back(sums[i].lambda_min);
        below.push_back(sums[i].below_floor);
      }
      const NtkNet& n = r.nets[members[key].front()];
      const Dataset& ds = spec.datasets[n.dataset];
      const Stats c = stats_of(cond);
      median_cond[{key, w}] = c.median;
      nlohmann::json g = {{"arch", arch_name(n.arch)}, {"activation", act_of(n.act)}, {"d", ds.d},
                          {"points", ds.n_train()}, {"base_width", n.base_width}, {"width", n.width},
                          {"params", num_params(Shape{n.arch, n.act, ds.d, n.width})},
                          {"when", w == 0 ? "init" : "trained"}, {"networks", c.count}, {"failed", failed},
                          {"cond_median", c.median}, {"cond_min", c.lo}, {"cond_max", c.hi},
                          {"lambda_max_median", stats_of(lmax).median}, {"lambda_min_median", stats_of(lmin).median},
                          {"below_floor_median", stats_of(below).median}};
      if (c.count == 0) g["cond_median"] = nullptr, g["cond_min"] = nullptr, g["cond_max"] = nullptr;
      js["groups"].push_back(g);
    }
  js["ratios"] = nlohmann::json::array();
  for (int w = 0; w < (after ? 2 : 1); ++w)
    for (const auto& key : order) {
      const auto [t, arch, act, bw] = key;
      if (arch == static_cast<int>(Arch::kMlp)) continue;
      const GroupKey base{t, static_cast<int>(Arch::kMlp), act, bw};
      if (!members.count(base)) continue;
      const double ratio = median_cond[{key, w}] / median_cond[{base, w}];
      js["ratios"].push_back({{"arch", arch_name(static_cast<Arch>(arch))}, {"activation", act_of(static_cast<Act>(act))},
                              {"d", spec.datasets[t].d}, {"base_width", bw}, {"when", w == 0 ? "init" : "trained"},
                              {"cond_ratio", std::isfinite(ratio) ? nlohmann::json(ratio) : nlohmann::json()}});
    }

  // Loss curves, their medians over seeds and the crossings.
  if (dyn) {
    std::ostringstream loss, med, cross;
    loss << "problem,arch,activation,d,base_width,width,seed,eta,step,loss\n";
    for (std::size_t i = 0; i < r.nets.size(); ++i) {
      const NtkNet& n = r.nets[i];
      for (std::size_t t = 0; t < r.steps.size(); ++t)
        loss << csv_quote(spec.problem) << "," << arch_name(n.arch) << "," << act_of(n.act) << ","
             << spec.datasets[n.dataset].d << "," << n.base_width << "," << n.width << "," << n.seed << ","
             << cell(r.curves[i].eta) << "," << r.steps[t] << ","
             << (std::isnan(r.curves[i].loss[t]) ? "nan" : cell(r.curves[i].loss[t])) << "\n";
    }
    std::map<GroupKey, std::vector<double>> medians;
    med << "problem,arch,activation,d,base_width,step,median_loss\n";
    for (const auto& key : order) {
      auto& m = medians[key];
      for (std::size_t t = 0; t < r.steps.size(); ++t) {
        std::vector<double> v;
        for (auto i : members[key])
          if (r.init[i].ok && !r.curves[i].failed) v.push_back(r.curves[i].loss[t]);
        m.push_back(median_of(v));
      }
      const auto [ds, arch, act, bw] = key;
      for (std::size_t t = 0; t < r.steps.size(); ++t)
        med << csv_quote(spec.problem) << "," << arch_name(static_cast<Arch>(arch)) << ","
            << act_of(static_cast<Act>(act)) << "," << spec.datasets[ds].d << "," << bw << "," << r.steps[t] << ","
            << (std::isfinite(m[t]) ? cell(m[t]) : "inf") << "\n";
    }
    cross << "problem,arch,base_arch,activation,d,base_width,found,step,note\n";
    js["crossings"] = nlohmann::json::array();
    for (const auto& key : order) {
      const auto [t, arch, act, bw] = key;
      if (arch == static_cast<int>(Arch::kMlp)) continue;
      const GroupKey base{t, static_cast<int>(Arch::kMlp), act, bw};
      if (!members.count(base)) continue;
      const Crossing c = find_crossing(r.steps, medians[base], medians[key]);
      cross << csv_quote(spec.problem) << "," << arch_name(static_cast<Arch>(arch)) << ",mlp,"
            << act_of(static_cast<Act>(act)) << "," << spec.datasets[t].d << "," << bw << ","
            << (c.found ? "yes" : "no") << "," << (c.found ? std::to_string(c.step) : "") << "," << csv_quote(c.note)
            << "\n";
      js["crossings"].push_back({{"arch", arch_name(static_cast<Arch>(arch))}, {"base_arch", "mlp"},
                                 {"activation", act_of(static_cast<Act>(act))}, {"d", spec.datasets[t].d},
                                 {"base_width", bw}, {"found", c.found},
                                 {"step", c.found ? nlohmann::json(c.step) : nlohmann::json()}, {"note", c.note},
                                 {"final_median_loss", std::isfinite(medians[key].back()) ? nlohmann::json(medians[key].back()) : nlohmann::json()},
                                 {"final_median_loss_base", std::isfinite(medians[base].back()) ? nlohmann::json(medians[base].back()) : nlohmann::json()}});
    }
    f.loss_csv = loss.str();
    f.median_csv = med.str();
    f.crossing_csv = cross.str();
  }
  int failed = 0;
  for (const auto& s : r.init) failed += !s.ok;
  js["networks"] = r.nets.size();
  js["failed"] = failed;
  return f;
}

void print_ntk_table(std::ostream& os, const nlohmann::json& js) {
  char line[256];
  std::snprintf(line, sizeof line, "%-5s %-8s %5s %7s %7s %9s %-8s %12s %12s %12s\n", "arch", "act", "d", "width",
                "n", "params", "when", "cond med", "cond min", "cond max");
  os << line;
  auto fmt = [](const nlohmann::json& v) -> std::string {
    if (!v.is_number()) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", v.get<double>());
    return b;
  };
  for (const auto& g : js["groups"]) {
    std::snprintf(line, sizeof line, "%-5s %-8s %5d %7d %7d %9d %-8s %12s %12s %12s\n",
                  g["arch"].get<std::string>().c_str(), g["activation"].get<std::string>().c_str(), g["d"].get<int>(),
                  g["base_width"].get<int>(), g["width"].get<int>(), g["params"].get<int>(),
                  g["when"].get<std::string>().c_str(), fmt(g["cond_median"]).c_str(), fmt(g["cond_min"]).c_str(),
                  fmt(g["cond_max"]).c_str());
    os << line;
  }
  for (const auto& q : js["ratios"])
    os << "cond ratio " << q["arch"].get<std::string>() << "/mlp (" << q["activation"].get<std::string>()
       << ", d = " << q["d"] << ", width " << q["base_width"] << ", " << q["when"].get<std::string>()
       << "): " << fmt(q["cond_ratio"]) << "\n";
  if (js.contains("crossings"))
    for (const auto& c : js["crossings"])
      os << "loss crossing " << c["arch"].get<std::string>() << " vs mlp (" << c["activation"].get<std::string>()
         << ", d = " << c["d"] << ", width " << c["base_width"] << "): "
         << (c["found"].get<bool>() ? "at step " + std::to_string(c["step"].get<int>()) : c["note"].get<std::string>())
         << "; final median loss " << fmt(c["final_median_loss"]) << " against " << fmt(c["final_median_loss_base"])
         << "\n";
  if (js.value("failed", 0) > 0) os << js["failed"] << " networks failed; see the reason column of ntk.csv\n";
}

}  // namespace gs
