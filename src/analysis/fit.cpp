// Slope fitting of L(P) on log-log axes: the median curve across seeds, and per-seed slopes
// with a bootstrap interval of their median.
#include "gpusweep/analysis/fit.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <tuple>

#include "gpusweep/model/data.h"
#include "gpusweep/util/util.h"

namespace gs {

LineFit fit_loglog(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) throw std::invalid_argument("fit: x and y differ in length");
  const std::size_t n = x.size();
  for (std::size_t k = 0; k < n; ++k)
    if (!(x[k] > 0.0 && y[k] > 0.0 && std::isfinite(x[k]) && std::isfinite(y[k])))
      throw std::invalid_argument("fit: a log-log fit needs positive finite values");
  double mx = 0.0, my = 0.0;
  for (std::size_t k = 0; k < n; ++k) {
    mx += std::log(x[k]);
    my += std::log(y[k]);
  }
  if (n < 2) throw std::invalid_argument("fit: need at least two widths");
  mx /= n;
  my /= n;
  double sxx = 0.0, sxy = 0.0, syy = 0.0;
  for (std::size_t k = 0; k < n; ++k) {
    const double dx = std::log(x[k]) - mx, dy = std::log(y[k]) - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx == 0.0) throw std::invalid_argument("fit: need at least two distinct widths");
  LineFit f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  f.r2 = syy == 0.0 ? 1.0 : (sxy * sxy) / (sxx * syy);
  f.points = static_cast<int>(n);
  return f;
}

namespace {

// Quantile q of sorted values, by linear interpolation between order statistics.
double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * (sorted.size() - 1);
  const std::size_t k = static_cast<std::size_t>(pos);
  if (k + 1 >= sorted.size()) return sorted.back();
  return sorted[k] + (pos - k) * (sorted[k + 1] - sorted[k]);
}

// Names the first RMSE that a log-log fit cannot take, or returns "".
std::string bad_rmse(const std::vector<const FitRow*>& rows) {
  for (const FitRow* r : rows)
    if (!(r->test_rmse > 0.0 && std::isfinite(r->test_rmse)))
      return "test RMSE " + std::to_string(r->test_rmse) + " at width " + std::to_string(r->width) +
             " (seed " + std::to_string(r->seed) + "): a log-log fit needs positive finite values";
  return "";
}

}  // namespace

SlopeStat bootstrap_median(const std::vector<double>& values, const std::vector<double>& r2,
                           int resamples, double level, std::uint64_t seed) {
  SlopeStat st;
  st.seeds = static_cast<int>(values.size());
  if (values.empty()) return st;
  st.median = median_of(values);
  st.r2 = r2.empty() ? 0.0 : median_of(r2);
  if (values.size() == 1 || resamples < 1) {
    st.lo = st.hi = st.median;
    return st;
  }
  Rng rng(seed);
  std::vector<double> meds(resamples), pick(values.size());
  for (int b = 0; b < resamples; ++b) {
    for (auto& v : pick) v = values[rng.next() % values.size()];
    meds[b] = median_of(pick);
  }
  std::sort(meds.begin(), meds.end());
  const double tail = 0.5 * (1.0 - level);
  st.lo = quantile(meds, tail);
  st.hi = quantile(meds, 1.0 - tail);
  return st;
}

std::vector<FitRow> fit_rows(const SweepSpec& spec, const std::vector<Job>& jobs,
                             const std::vector<NetResult>& results) {
  std::vector<FitRow> rows(jobs.size());
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Dataset& ds = spec.datasets[jobs[j].target];
    FitRow& r = rows[j];
    const Model model = jobs[j].model();
    r.arch = model_name(model);
    r.activation = model_act_name(model, jobs[j].act);
    r.target = ds.name;
    r.width = jobs[j].width;
    r.params = model_num_params(model, ds.d, jobs[j].width);
    r.effective_params = model_effective_params(model, ds.d, jobs[j].width, jobs[j].act);
    r.seed = jobs[j].seed;
    r.test_rmse = results[j].test_rmse;
    r.failed = results[j].status == Status::kFailed;
  }
  return rows;
}

std::vector<GroupFit> fit_groups(const std::vector<FitRow>& rows, const FitOptions& opt) {
  using Key = std::tuple<std::string, std::string, std::string>;  // target, arch, activation
  std::map<Key, std::vector<const FitRow*>> groups;  // the non-failed networks of each group
  std::vector<Key> order;
  for (const FitRow& r : rows) {
    const Key key{r.target, r.arch, r.activation};
    if (!groups.count(key)) order.push_back(key);
    auto& g = groups[key];  // groups with no usable network at all still get a row that says so
    if (!r.failed) g.push_back(&r);
  }
  auto in_range = [&](int w) { return w >= opt.min_width && (opt.max_width <= 0 || w <= opt.max_width); };
  const std::string range = "widths " + std::to_string(opt.min_width) + ".." +
                            (opt.max_width > 0 ? std::to_string(opt.max_width) : std::string("any"));
  std::vector<GroupFit> fits;
  for (const Key& key : order) {
    const auto& all = groups[key];
    GroupFit gf;
    gf.target = std::get<0>(key);
    gf.arch = std::get<1>(key);
    gf.activation = std::get<2>(key);
    // Every width: its P and the spread of its RMSEs across seeds.
    std::map<int, std::vector<double>> by_width;
    std::map<int, int> params_of, effective_of;
    bool effective_known = true;
    for (const FitRow* r : all) {
      by_width[r->width].push_back(r->test_rmse);
      params_of[r->width] = r->params;
      effective_of[r->width] = r->effective_params;
      effective_known = effective_known && r->effective_params > 0;
    }
    for (auto& [w, v] : by_width) {
      gf.widths.push_back(w);
      gf.params.push_back(params_of[w]);
      if (effective_known) gf.effective_params.push_back(effective_of[w]);
      gf.median_rmse.push_back(median_of(v));
      gf.min_rmse.push_back(*std::min_element(v.begin(), v.end()));
      gf.max_rmse.push_back(*std::max_element(v.begin(), v.end()));
    }
    // Seeds whose networks are the same at every width (the same RMSE to 1e-9, so far as a
    // result shows; the last bits differ with the order of the sums): the training did not
    // depend on the seed.
    std::map<int, std::map<int, double>> rmse_of_seed;  // seed -> width -> RMSE
    for (const FitRow* r : all) rmse_of_seed[r->seed][r->width] = r->test_rmse;
    if (rmse_of_seed.size() > 1) {
      const auto& first = rmse_of_seed.begin()->second;
      auto same = [](double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); };
      gf.seeds_identical = true;
      for (const auto& [seed, m] : rmse_of_seed) {
        if (m.size() != first.size()) gf.seeds_identical = false;
        for (auto a = m.begin(), b = first.begin(); gf.seeds_identical && a != m.end(); ++a, ++b)
          gf.seeds_identical = a->first == b->first && same(a->second, b->second);
      }
    }
    // The fit: the widths in the range.
    std::vector<const FitRow*> g;
    for (const FitRow* r : all)
      if (in_range(r->width)) g.push_back(r);
    if (const std::string bad = bad_rmse(g); !bad.empty()) {
      gf.note = bad;
      fits.push_back(std::move(gf));
      continue;
    }
    std::vector<double> xw, xp, xe, y;
    for (std::size_t k = 0; k < gf.widths.size(); ++k) {
      if (!in_range(gf.widths[k])) continue;
      gf.fit_widths.push_back(gf.widths[k]);
      xw.push_back(gf.widths[k]);
      xp.push_back(gf.params[k]);
      if (effective_known) xe.push_back(gf.effective_params[k]);
      y.push_back(gf.median_rmse[k]);
    }
    if (xw.size() < 2) {
      gf.note = "fit: need at least two widths with a non-failed network in " + range + ", have " +
                std::to_string(xw.size());
      fits.push_back(std::move(gf));
      continue;
    }
    gf.vs_width = fit_loglog(xw, y);
    gf.vs_params = fit_loglog(xp, y);
    if (effective_known) gf.vs_effective = fit_loglog(xe, y);
    gf.ok = true;
    // Per seed: its own curve, when it has two widths or more.
    std::map<int, std::vector<const FitRow*>> by_seed;
    for (const FitRow* r : g) by_seed[r->seed].push_back(r);
    std::vector<double> sw, sp, se, rw, rp, re;
    int skipped = 0;
    for (auto& [seed, rs] : by_seed) {
      std::vector<double> x1, x2, x3, yy;
      for (const FitRow* r : rs) {
        x1.push_back(r->width);
        x2.push_back(r->params);
        x3.push_back(r->effective_params);
        yy.push_back(r->test_rmse);
      }
      std::vector<double> distinct = x1;
      std::sort(distinct.begin(), distinct.end());
      if (std::unique(distinct.begin(), distinct.end()) - distinct.begin() < 2) {
        ++skipped;
        continue;
      }
      const LineFit a = fit_loglog(x1, yy), b = fit_loglog(x2, yy);
      sw.push_back(a.slope);
      rw.push_back(a.r2);
      sp.push_back(b.slope);
      rp.push_back(b.r2);
      if (effective_known) {
        const LineFit c = fit_loglog(x3, yy);
        se.push_back(c.slope);
        re.push_back(c.r2);
      }
    }
    if (skipped > 0)
      gf.seed_note = std::to_string(skipped) + " seed(s) with fewer than two widths left out";
    if (gf.seeds_identical)
      gf.seed_note += std::string(gf.seed_note.empty() ? "" : "; ") + "all " + std::to_string(rmse_of_seed.size()) +
                      " seeds gave the same networks (their training does not depend on the seed), so the "
                      "interval has width zero and says nothing about the spread";
    gf.seed_vs_width = bootstrap_median(sw, rw, opt.bootstrap, opt.level, opt.seed);
    gf.seed_vs_params = bootstrap_median(sp, rp, opt.bootstrap, opt.level, opt.seed);
    if (effective_known) gf.seed_vs_effective = bootstrap_median(se, re, opt.bootstrap, opt.level, opt.seed);
    fits.push_back(std::move(gf));
  }
  return fits;
}

std::vector<GroupFit> fit_groups(const SweepSpec& spec, const std::vector<Job>& jobs,
                                 const std::vector<NetResult>& results, int min_width) {
  FitOptions o;
  o.min_width = min_width;
  return fit_groups(fit_rows(spec, jobs, results), o);
}

}  // namespace gs
