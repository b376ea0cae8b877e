// Slope fitting of L(P) on log-log axes.
#include "gpusweep/fit.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <tuple>

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

std::vector<GroupFit> fit_groups(const SweepSpec& spec, const std::vector<Job>& jobs,
                                 const std::vector<NetResult>& results, int min_width) {
  using Key = std::tuple<int, int, int, int, int>;  // target, method, arch, degree, act
  std::map<Key, std::map<int, std::vector<double>>> rmse;
  std::vector<Key> order;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Key key{jobs[j].target, static_cast<int>(jobs[j].method), static_cast<int>(jobs[j].arch),
                  jobs[j].degree, static_cast<int>(jobs[j].act)};
    if (!rmse.count(key)) order.push_back(key);
    auto& by_width = rmse[key];
    auto& v = by_width[jobs[j].width];
    if (results[j].status != Status::kFailed) v.push_back(results[j].test_rmse);
  }
  std::vector<GroupFit> fits;
  for (const Key& key : order) {
    GroupFit gf;
    const Model model(static_cast<Method>(std::get<1>(key)), static_cast<Arch>(std::get<2>(key)),
                      std::get<3>(key));
    const Dataset& ds = spec.datasets[std::get<0>(key)];
    gf.target = ds.name;
    gf.arch = model_name(model);
    gf.activation = model_act_name(model, static_cast<Act>(std::get<4>(key)));
    std::vector<double> xw, xp, y;
    for (auto& [w, v] : rmse[key]) {
      if (w < min_width || v.empty()) continue;
      std::sort(v.begin(), v.end());
      const std::size_t h = v.size() / 2;
      const double med = v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
      const int p = model_num_params(model, ds.d, w);
      gf.widths.push_back(w);
      gf.params.push_back(p);
      gf.median_rmse.push_back(med);
      xw.push_back(w);
      xp.push_back(p);
      y.push_back(med);
    }
    try {
      gf.vs_width = fit_loglog(xw, y);
      gf.vs_params = fit_loglog(xp, y);
      gf.ok = true;
    } catch (const std::invalid_argument& e) {
      gf.note = std::string(e.what()) + " (widths >= " + std::to_string(min_width) +
                " with a non-failed network: " + std::to_string(xw.size()) + ")";
    }
    fits.push_back(std::move(gf));
  }
  return fits;
}

}  // namespace gs
